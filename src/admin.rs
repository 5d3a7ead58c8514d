//! Admin HTTP listener: `/metrics` (Prometheus), `/healthz` (process alive), `/readyz`
//! (a validated snapshot is serving), `/identities` (this sidecar's live inventory).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::audit::AuditView;
use crate::snapshot::SnapshotHandle;

#[derive(Clone)]
struct AdminState {
    prometheus: Option<PrometheusHandle>,
    snapshots: Arc<SnapshotHandle>,
    audit: AuditView,
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
    audit: AuditView,
    demo: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let details = listener.local_addr()?.ip().is_loopback();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/identities", get(identities))
        .with_state(AdminState {
            prometheus,
            snapshots,
            audit,
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
    let mut text = state
        .prometheus
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    crate::metrics::render_histograms(&mut text);
    text
}

/// Ready while a validated snapshot serves, every issuer whose keys are fetched (and is not
/// `optional`) has its first key set, and every status list the config names exactly has
/// arrived. A failed reload does not make it unready (the last good
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
        .chain(
            snapshot
                .identity
                .issuers
                .iter()
                .filter(|issuer| issuer.awaits_status_lists())
                .map(|issuer| format!("the status lists of issuer `{}`", issuer.issuer)),
        )
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
    let (dropped, write_errors) = (state.audit.dropped(), state.audit.write_errors());
    if dropped > 0 || write_errors > 0 {
        body.push_str(&format!(
            "audit: {dropped} records dropped (queue full), {write_errors} failed writes, \
             since start"
        ));
        // Where records go (a collector's address) is for the node's operators.
        if state.details {
            body.push_str("; sinks: ");
            body.push_str(&state.audit.sinks().join(", "));
        }
        body.push('\n');
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for (domain, next_update) in snapshot.identity.trust.expired_crls(now) {
        body.push_str(&format!(
            "crl expired: trust domain `{domain}`'s CRL passed its nextUpdate at {next_update} \
             (Unix seconds); its certificates are refused `crl_expired` until a fresh list is \
             installed\n"
        ));
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

/// The live inventory as JSON: every identity this sidecar decided for since it started (at
/// most `audit.identities_max`, the longest unseen evicted first). Who calls what is for the
/// node's operators: served on a loopback admin listener only.
async fn identities(
    State(state): State<AdminState>,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
) {
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    if !state.details {
        return (
            StatusCode::FORBIDDEN,
            json,
            r#"{"error":"/identities is served on a loopback admin listener only"}"#.into(),
        );
    }
    let live = state.audit.live_identities();
    match serde_json::to_string(&live) {
        Ok(body) => (StatusCode::OK, json, body),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json,
            serde_json::json!({ "error": e.to_string() }).to_string(),
        ),
    }
}
