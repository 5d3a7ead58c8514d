//! Following one issuer's token status lists: each list is fetched as soon as a token names it
//! (or at start, for a list the config names exactly), then again at its `ttl` clamped to the
//! configured bounds, with backoff after a failure, keeping the last good copy throughout
//! (until its maximum age, when its tokens are refused). Requests read the copy in place and
//! never wait for a fetch; an answer is kept no longer than the list's next refresh, so a new
//! copy needs no snapshot build to take effect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::http::{FetchError, HttpClient};
use crate::identity::jwks::unix_now;
use crate::identity::status_list::{
    ListVerifier, LiveList, MAX_LIST_BYTES, StatusListSpec, StatusLists,
};
use crate::metrics::Metrics;

/// The media type a status list token is asked for as (§8.1).
const MEDIA_TYPE: &str = "application/statuslist+jwt";

/// First retry after a failed fetch; doubles up to the list's refresh interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Longest sleep with nothing due: how soon the follower notices it is no longer needed.
const IDLE: Duration = Duration::from_secs(60);

/// When each list is next fetched, and how many fetches of it failed in a row.
struct Schedule {
    due: Instant,
    failures: u32,
}

/// Follows `lists` until no snapshot holds them any more.
pub(super) async fn follow(lists: Arc<StatusLists>, client: HttpClient) {
    let mut schedule: HashMap<String, Schedule> = HashMap::new();
    loop {
        if Arc::strong_count(&lists) == 1 {
            return;
        }
        // Without a verifier (no snapshot in force has set the issuer's keys yet) nothing can
        // be checked: wait for one (setting it wakes this task), rather than finding every
        // list due again at once.
        let Some(verifier) = lists.verifier() else {
            tokio::select! {
                () = tokio::time::sleep(IDLE) => {}
                () = lists.wanted() => {}
            }
            continue;
        };
        let mut next = Instant::now() + IDLE;
        for list in lists.lists() {
            let now = Instant::now();
            let entry = schedule.entry(list.uri().to_owned()).or_insert(Schedule {
                due: now,
                failures: 0,
            });
            if entry.due <= now {
                let spec = lists.spec();
                match fetch(&client, &list, &verifier, spec).await {
                    Ok((result, refresh)) => {
                        entry.failures = 0;
                        entry.due = Instant::now() + Duration::from_secs(refresh);
                        Metrics.status_list_fetched(&spec.issuer, result);
                    }
                    Err((kind, error)) => {
                        entry.failures = entry.failures.saturating_add(1);
                        let retry = FIRST_BACKOFF
                            .saturating_mul(1 << entry.failures.min(16).saturating_sub(1))
                            .min(Duration::from_secs(spec.refresh_seconds));
                        tracing::warn!(
                            issuer = %spec.issuer,
                            list = %list.uri(),
                            error = %error,
                            retry_in_s = retry.as_secs(),
                            failures = entry.failures,
                            have_list = list.fetched(),
                            "cannot refresh a token status list; keeping the last good copy \
                             until its maximum age"
                        );
                        entry.due = Instant::now() + retry;
                        Metrics.status_list_fetched(&spec.issuer, kind);
                    }
                }
            }
            next = next.min(entry.due);
        }
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = lists.wanted() => {}
        }
    }
}

/// Fetches and checks `list`, putting the new copy in place: whether it `changed`, and in
/// how many seconds it is due again (its `ttl`, within the configured bounds).
async fn fetch(
    client: &HttpClient,
    list: &LiveList,
    verifier: &ListVerifier,
    spec: &StatusListSpec,
) -> Result<(&'static str, u64), (&'static str, String)> {
    let fetched = client
        .get_as(list.uri(), MEDIA_TYPE)
        .await
        .map_err(|e: FetchError| (e.kind(), e.to_string()))?;
    let now = unix_now();
    let token = verifier
        .verify(&fetched.text, list.uri(), now, MAX_LIST_BYTES)
        .map_err(|reason| ("invalid", format!("{}: {reason}", list.uri())))?;
    let refresh = token.refresh_in(spec, now);
    let result = if list.same_entries(&token) {
        "unchanged"
    } else {
        if list.fetched() {
            tracing::info!(list = %list.uri(), "token status list changed");
        }
        "changed"
    };
    if !list.replace(token, now, refresh, spec.max_age_seconds) {
        return Err((
            "older",
            format!(
                "{}: older (`iat`) than the copy in place (a stale cache or a replay); kept \
                 the newer one",
                list.uri()
            ),
        ));
    }
    Ok((result, refresh))
}
