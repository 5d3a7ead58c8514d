//! Admin HTTP listener: `/metrics` (Prometheus), `/healthz` (process alive), `/readyz`
//! (a validated snapshot is serving).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::snapshot::SnapshotHandle;

#[derive(Clone)]
struct AdminState {
    prometheus: Option<PrometheusHandle>,
    snapshots: Arc<SnapshotHandle>,
    /// Reload errors name files and lines: shown only when the listener is on loopback, where
    /// only the node's own processes can read them.
    details: bool,
    /// Serving the embedded demo estate (no `--config`): said on every `/readyz`.
    demo: bool,
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    prometheus: Option<PrometheusHandle>,
    snapshots: Arc<SnapshotHandle>,
    demo: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let details = listener.local_addr()?.ip().is_loopback();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(AdminState {
            prometheus,
            snapshots,
            details,
            demo,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<AdminState>) -> String {
    crate::metrics::publish();
    for issuer in state.snapshots.load().identity.issuers.iter() {
        if let Some(age) = issuer.remote.as_ref().and_then(|r| r.age_seconds()) {
            crate::metrics::Metrics.jwks_age(&issuer.issuer, age as f64);
        }
    }
    state
        .prometheus
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// Ready while a validated snapshot serves and every issuer whose keys are fetched (and is not
/// `optional`) has its first key set. A failed reload does not make it unready (the last good
/// snapshot still decides) but is reported, so a broken rollout is visible.
async fn ready(State(state): State<AdminState>) -> (StatusCode, String) {
    let snapshot = state.snapshots.load();
    let waiting: Vec<String> = snapshot
        .identity
        .issuers
        .iter()
        .filter(|issuer| issuer.awaits_keys())
        .map(|issuer| {
            let from = issuer.remote.as_ref().map_or("", |r| r.location.as_str());
            format!("the key set of issuer `{}` (from {from})", issuer.issuer)
        })
        .chain(snapshot.awaiting.iter().cloned())
        .collect();
    if !waiting.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: waiting for {}; until it arrives, what it vouches for is refused \
                 (see the log for why)\n",
                waiting.join(", ")
            ),
        );
    }
    let mut body = format!(
        "ready generation={} policies={}\n",
        snapshot.generation,
        snapshot.policies.policy_count()
    );
    if state.demo {
        body.push_str(
            "demo: true (the embedded demo estate, whose test credentials anyone can mint; \
             pass --config for your own)\n",
        );
    }
    if let Some(error) = state.snapshots.last_reload_error() {
        body.push_str("last reload failed; serving the previous configuration");
        if state.details {
            body.push_str(":\n");
            body.push_str(&error);
            body.push('\n');
        } else {
            body.push_str(" (details in the log, or on a loopback admin listener)\n");
        }
    }
    (StatusCode::OK, body)
}
