//! Following one issuer's fetched key set: fetch at once, then again at the interval the
//! response's `Cache-Control: max-age` asks for (clamped to the configured bounds), earlier
//! when a request meets an unknown `kid` (at most once per cooldown), and with backoff after a
//! failure, keeping the last good set throughout. A changed set asks for a snapshot build;
//! nothing here is ever on a request's path.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::http::{FetchError, HttpClient};
use crate::config::check_fetch_url;
use crate::identity::jwks::{KeySet, RemoteKeys, unix_now};
use crate::metrics::Metrics;
use crate::snapshot::spec::{JwksLocation, RemoteJwksSpec};

/// First retry after a failed fetch; doubles up to [`MAX_BACKOFF`] (or the refresh interval,
/// if shorter).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between retries after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Most keys taken from one issuer's JWKS (real ones hold a handful): bounds the set's
/// memory and the per-token key lookup.
const MAX_KEYS: usize = 100;

/// A key set fetched and checked.
struct Arrived {
    text: String,
    keys: KeySet,
    max_age: Option<u64>,
}

/// Follows `keys` until nothing but this task holds it (no snapshot names the issuer any
/// more), calling `changed` whenever a new set is in place.
pub(super) async fn follow(
    keys: Arc<RemoteKeys>,
    spec: RemoteJwksSpec,
    client: HttpClient,
    changed: Arc<dyn Fn() + Send + Sync>,
) {
    let cooldown = Duration::from_secs(spec.unknown_kid_cooldown_seconds);
    let mut last_text: Option<String> = None;
    let mut last_attempt: Option<Instant> = None;
    let mut failures: u32 = 0;
    let mut due = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = keys.refetch_wanted() => {
                // Unknown kids ask at most once per cooldown, however many there are.
                if let Some(at) = last_attempt.and_then(|t| t.checked_add(cooldown))
                    && at > Instant::now()
                {
                    tokio::time::sleep_until(at.min(due)).await;
                }
            }
        }
        if Arc::strong_count(&keys) == 1 {
            return;
        }
        let asked = keys.take_wanted();
        last_attempt = Some(Instant::now());
        match fetch(&client, &spec).await {
            Ok(arrived) => {
                failures = 0;
                let now = unix_now();
                let result = if last_text.as_deref() == Some(arrived.text.as_str()) {
                    keys.confirm(now, None);
                    "unchanged"
                } else {
                    let added = arrived.keys.kids();
                    let replaced = keys.confirm(now, Some(Arc::new(arrived.keys)));
                    log_rotation(&spec, replaced.as_deref(), &added, asked);
                    last_text = Some(arrived.text);
                    changed();
                    "changed"
                };
                Metrics.jwks_fetched(&spec.issuer, result, keys.current().map_or(0, |k| k.len()));
                due = later(refresh_interval(&spec, arrived.max_age));
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let retry = backoff(&spec, failures);
                tracing::warn!(
                    issuer = %spec.issuer,
                    error = %error,
                    retry_in_s = retry.as_secs(),
                    failures,
                    have_keys = keys.current().is_some(),
                    "cannot refresh the issuer's keys; keeping the last good set"
                );
                Metrics.jwks_fetched(
                    &spec.issuer,
                    error.kind(),
                    keys.current().map_or(0, |k| k.len()),
                );
                due = later(retry);
            }
        }
    }
}

/// `wait` from now, or as far as the clock goes.
fn later(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// The JWKS (found through discovery when configured), checked to be a usable key set.
async fn fetch(client: &HttpClient, spec: &RemoteJwksSpec) -> Result<Arrived, FetchError> {
    let url = match &spec.location {
        JwksLocation::Uri(uri) => uri.clone(),
        JwksLocation::Discovery => discover(client, &spec.issuer).await?,
    };
    let fetched = client.get(&url).await?;
    let (keys, skipped) =
        KeySet::from_fetched_json(&fetched.text, MAX_KEYS).map_err(|e| FetchError::Invalid {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    if !skipped.is_empty() {
        tracing::warn!(issuer = %spec.issuer, url = %url, skipped = ?skipped, "keys in the issuer's JWKS that Tollgate cannot use were skipped");
    }
    if keys.is_empty() {
        return Err(FetchError::Invalid {
            url,
            reason: "the JWKS holds no signing key".into(),
        });
    }
    Ok(Arrived {
        text: fetched.text,
        keys,
        max_age: fetched.max_age,
    })
}

#[derive(serde::Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// OIDC Discovery 1.0 §4: `{issuer}/.well-known/openid-configuration` (any trailing `/` of
/// the issuer removed first), whose `issuer` must be the configured one exactly (§4.3), and
/// whose `jwks_uri` must be a URL Tollgate may fetch.
async fn discover(client: &HttpClient, issuer: &str) -> Result<String, FetchError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let fetched = client.get(&url).await?;
    let invalid = |reason: String| FetchError::Invalid {
        url: url.clone(),
        reason,
    };
    let document: Discovery = serde_json::from_str(&fetched.text).map_err(|e| {
        invalid(format!(
            "not an OpenID provider configuration with `issuer` and `jwks_uri`: {e}"
        ))
    })?;
    if document.issuer != issuer {
        return Err(invalid(format!(
            "names issuer `{}`, not `{issuer}`: a configuration for another issuer must not be \
             used (OIDC Discovery §4.3)",
            document.issuer
        )));
    }
    let allow_http = issuer.starts_with("http://");
    check_fetch_url(&document.jwks_uri, allow_http)
        .map_err(|e| invalid(format!("jwks_uri: {e}")))?;
    Ok(document.jwks_uri)
}

/// The next refresh: the response's `max-age` (or the configured default), within the bounds.
fn refresh_interval(spec: &RemoteJwksSpec, max_age: Option<u64>) -> Duration {
    Duration::from_secs(
        max_age
            .unwrap_or(spec.refresh_seconds)
            .clamp(spec.refresh_min_seconds, spec.refresh_max_seconds),
    )
}

/// After `failures` failed fetches in a row: 1 s, 2 s, 4 s, … up to five minutes, or the
/// refresh interval if that is shorter.
fn backoff(spec: &RemoteJwksSpec, failures: u32) -> Duration {
    let cap = MAX_BACKOFF.min(Duration::from_secs(spec.refresh_seconds));
    FIRST_BACKOFF
        .saturating_mul(1_u32 << failures.saturating_sub(1).min(16))
        .min(cap)
}

fn log_rotation(spec: &RemoteJwksSpec, before: Option<&KeySet>, now: &[String], asked: bool) {
    let old = before.map(KeySet::kids).unwrap_or_default();
    let added: Vec<&str> = now
        .iter()
        .filter(|k| !old.contains(k))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = old
        .iter()
        .filter(|k| !now.contains(k))
        .map(String::as_str)
        .collect();
    tracing::info!(
        issuer = %spec.issuer,
        source = %spec.describe(),
        keys = now.len(),
        added = ?added,
        removed = ?removed,
        after_unknown_kid = asked,
        "issuer key set updated"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RemoteJwksSpec {
        RemoteJwksSpec {
            issuer: "https://idp.test".into(),
            location: JwksLocation::Discovery,
            refresh_min_seconds: 300,
            refresh_max_seconds: 86_400,
            refresh_seconds: 600,
            max_age_seconds: 86_400,
            unknown_kid_cooldown_seconds: 30,
            optional: false,
        }
    }

    #[test]
    fn max_age_is_clamped_to_the_configured_bounds() {
        let s = spec();
        assert_eq!(refresh_interval(&s, None), Duration::from_secs(600));
        assert_eq!(refresh_interval(&s, Some(0)), Duration::from_secs(300));
        assert_eq!(refresh_interval(&s, Some(3600)), Duration::from_secs(3600));
        assert_eq!(
            refresh_interval(&s, Some(u64::MAX)),
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let s = spec();
        let waits: Vec<u64> = (1..=12).map(|n| backoff(&s, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(&s, u32::MAX), Duration::from_secs(300));
        let short = RemoteJwksSpec {
            refresh_seconds: 5,
            refresh_min_seconds: 1,
            ..spec()
        };
        assert_eq!(backoff(&short, 10), Duration::from_secs(5));
    }
}
