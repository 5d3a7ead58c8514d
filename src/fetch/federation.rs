//! Polling a federated trust domain's SPIFFE bundle endpoint (SPIFFE Federation, `https_web`
//! profile: Web PKI server authentication through the fetcher's client). Each poll waits the
//! bundle's own `spiffe_refresh_hint` (clamped to 1 s – 1 day; 5 minutes when it gives none);
//! a bundle is taken only when it is a valid SPIFFE bundle and newer than the one held
//! (`spiffe_sequence`), and a taken one asks for a snapshot build. A failed poll keeps the held
//! bundle and tries again at the next interval, as the spec asks (not aggressively).

use std::sync::Arc;
use std::time::Duration;

use super::http::{FetchError, HttpClient};
use tokio::time::Instant;

use crate::identity::bundle::{Offered, RemoteBundle, bundle_header, jwt_svid_keys};
use crate::snapshot::build::live_authorities;
use crate::snapshot::spec::BundleEndpointSpec;

/// The interval when a bundle gives no refresh hint (Federation §4.1 suggests five minutes).
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Bounds on what a refresh hint may ask for.
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(86_400);

/// Polls `spec`'s endpoint into `bundle` until nothing but this task holds it.
pub(super) async fn follow(
    bundle: Arc<RemoteBundle>,
    spec: BundleEndpointSpec,
    client: HttpClient,
    changed: Arc<dyn Fn() + Send + Sync>,
) {
    let mut interval = DEFAULT_REFRESH;
    let max_age = Duration::from_secs(spec.max_age_seconds);
    let mut last_success: Option<Instant> = None;
    loop {
        if Arc::strong_count(&bundle) == 1 {
            return;
        }
        let result = match poll(&client, &spec).await {
            Ok((sequence, hint, text)) => {
                if let Some(hint) = hint {
                    interval = Duration::from_secs(hint).clamp(MIN_REFRESH, MAX_REFRESH);
                }
                let offered = bundle.offered(sequence, text);
                // Only a bundle taken or the very one held is a good poll: a refused one (an
                // older sequence) must not keep the held bundle alive.
                if offered != Offered::Refused {
                    last_success = Some(Instant::now());
                }
                if offered == Offered::Taken {
                    tracing::info!(trust_domain = %spec.trust_domain, endpoint = %spec.url, sequence, "federated bundle updated");
                    changed();
                    "changed"
                } else {
                    "unchanged"
                }
            }
            Err(error) => {
                tracing::warn!(trust_domain = %spec.trust_domain, %error, retry_in_s = interval.as_secs(), "cannot refresh the federated bundle; keeping the last good one");
                error.kind()
            }
        };
        metrics::counter!("tollgate_bundle_endpoint_fetches_total", "trust_domain" => spec.trust_domain.clone(), "result" => result).increment(1);
        // Past its maximum age without a good poll, the held bundle vouches no more.
        let expires = last_success.and_then(|at| at.checked_add(max_age));
        if expires.is_some_and(|at| at <= Instant::now()) && bundle.expire() {
            tracing::error!(trust_domain = %spec.trust_domain, max_age_s = max_age.as_secs(), "no good poll of the bundle endpoint within its maximum age; the domain is refused until one succeeds");
            changed();
        }
        let wake = Instant::now() + interval;
        tokio::time::sleep_until(
            expires
                .filter(|at| *at > Instant::now())
                .map_or(wake, |at| at.min(wake)),
        )
        .await;
    }
}

/// One poll: the document, if it is a SPIFFE bundle whose authorities parse.
async fn poll(
    client: &HttpClient,
    spec: &BundleEndpointSpec,
) -> Result<(Option<u64>, Option<u64>, String), FetchError> {
    let fetched = client.get(&spec.url).await?;
    let invalid = |reason: String| FetchError::Invalid {
        url: spec.url.clone(),
        reason,
    };
    let (sequence, hint) =
        bundle_header(&fetched.text).map_err(|e| invalid(format!("not a SPIFFE bundle: {e}")))?;
    // Every check a build makes of a bundle, so one taken never fails a build.
    live_authorities(&spec.trust_domain, &fetched.text, 2048).map_err(invalid)?;
    jwt_svid_keys(&fetched.text, true).map_err(|e| invalid(e.to_string()))?;
    Ok((sequence, hint, fetched.text))
}
