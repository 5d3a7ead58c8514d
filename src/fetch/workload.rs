//! The SPIFFE Workload API as a stream of documents: each trust domain's X.509 bundle (its
//! own and federated ones, each under its own name, never merged), each one's JWT bundle, and
//! Tollgate's own X.509-SVID. Streams are followed in the background and reconnected with
//! backoff; while disconnected the last bundles are kept up to `workload_api_max_age_seconds`,
//! then dropped so the domains they vouched for fail closed. A change asks for a build.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use spiffe::WorkloadApiClient;
use spiffe::workload_api::WorkloadApiError;
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};

use crate::config::WorkloadApiSettings;
use crate::snapshot::source::Streamed;

/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Tollgate's own X.509-SVID, as the Workload API last sent it.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnSvid {
    /// The SPIFFE ID.
    pub spiffe_id: String,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 DER private key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for OwnSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnSvid")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// What the Workload API has sent, per trust domain.
#[derive(Default, Debug)]
pub struct Streams {
    /// X.509 bundles as SPIFFE bundle JSON (`x509-svid` keys), by trust domain name.
    x509: Mutex<BTreeMap<String, String>>,
    /// When each domain's X.509 bundle last changed.
    x509_since: Mutex<BTreeMap<String, std::time::Instant>>,
    /// JWT bundles as JWKS JSON, by trust domain name.
    jwt: Mutex<BTreeMap<String, String>>,
    svid: Mutex<Option<OwnSvid>>,
    /// Bumped whenever the X.509 stream changes the SVID or a bundle, so a TLS listener can
    /// tell when to rebuild its configuration.
    version: std::sync::atomic::AtomicU64,
}

impl Streams {
    /// The current text of a streamed document, if the API has sent it.
    pub fn read(&self, document: &Streamed) -> Option<String> {
        let lock = |m: &Mutex<BTreeMap<String, String>>, td: &str| {
            m.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(td)
                .cloned()
        };
        match document {
            Streamed::X509Bundle(td) => lock(&self.x509, td),
            Streamed::JwtBundle(td) => lock(&self.jwt, td),
        }
    }

    /// When a streamed document last changed (X.509 bundles only).
    pub fn since(&self, document: &Streamed) -> Option<std::time::Instant> {
        match document {
            Streamed::X509Bundle(td) => self
                .x509_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(td)
                .copied(),
            Streamed::JwtBundle(_) => None,
        }
    }

    /// Records, for each domain whose bundle differs between `old` and `new`, that it
    /// changed now.
    fn note_changes(&self, old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) {
        let now = std::time::Instant::now();
        let mut since = self
            .x509_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        since.retain(|td, _| new.contains_key(td));
        for (td, text) in new {
            if old.get(td) != Some(text) {
                since.insert(td.clone(), now);
            }
        }
    }

    /// Changes each time the SVID or an X.509 bundle changes.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Tollgate's own SVID, if the API has sent one.
    pub fn own_svid(&self) -> Option<OwnSvid> {
        self.svid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Replaces `slot` with `value`; true when that changed it.
fn replace<T: PartialEq>(slot: &Mutex<T>, value: T) -> bool {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if *slot == value {
        return false;
    }
    *slot = value;
    true
}

/// Starts following both streams of the Workload API at `settings.endpoint`.
pub(super) fn start(
    streams: Arc<Streams>,
    settings: &WorkloadApiSettings,
    changed: Arc<dyn Fn() + Send + Sync>,
) {
    let x509 = {
        let streams = streams.clone();
        move |context: spiffe::X509Context| {
            let bundles = context
                .bundle_set()
                .iter()
                .map(|(td, bundle)| {
                    let keys: Vec<serde_json::Value> = bundle
                        .authorities()
                        .iter()
                        .map(|ca| {
                            serde_json::json!({"use": "x509-svid", "x5c": [STANDARD.encode(ca.as_bytes())]})
                        })
                        .collect();
                    (td.as_str().to_owned(), serde_json::json!({"keys": keys}).to_string())
                })
                .collect();
            let svid = context.default_svid().map(|svid| OwnSvid {
                spiffe_id: svid.spiffe_id().to_string(),
                chain: svid
                    .cert_chain()
                    .iter()
                    .map(|c| c.as_bytes().to_vec())
                    .collect(),
                key: svid.private_key().as_bytes().to_vec(),
            });
            let old = streams
                .x509
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            streams.note_changes(&old, &bundles);
            let bundles_changed = replace(&streams.x509, bundles);
            if replace(&streams.svid, svid) | bundles_changed {
                streams
                    .version
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            // The SVID is the listener's, read per handshake; only bundles are in snapshots.
            bundles_changed
        }
    };
    let jwt = {
        let streams = streams.clone();
        move |set: spiffe::JwtBundleSet| {
            let bundles = set
                .iter()
                .map(|(td, bundle)| {
                    let keys: Vec<serde_json::Value> = bundle
                        .jwt_authorities()
                        .filter_map(|a| serde_json::from_slice(a.jwk_json()).ok())
                        .collect();
                    (
                        td.as_str().to_owned(),
                        serde_json::json!({"keys": keys}).to_string(),
                    )
                })
                .collect();
            replace(&streams.jwt, bundles)
        }
    };
    let endpoint = settings.endpoint.clone();
    let max_age = settings.max_age;
    let clear_x509 = {
        let streams = streams.clone();
        move || {
            let bundles = replace(&streams.x509, BTreeMap::new());
            let changed = replace(&streams.svid, None) | bundles;
            streams
                .version
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            changed
        }
    };
    let clear_jwt = {
        let streams = streams.clone();
        move || replace(&streams.jwt, BTreeMap::new())
    };
    tokio::spawn(follow(
        "x509",
        endpoint.clone(),
        max_age,
        changed.clone(),
        |client: WorkloadApiClient| async move { client.stream_x509_contexts().await },
        x509,
        clear_x509,
    ));
    tokio::spawn(follow(
        "jwt",
        endpoint,
        max_age,
        changed,
        |client: WorkloadApiClient| async move { client.stream_jwt_bundles().await },
        jwt,
        clear_jwt,
    ));
}

/// Follows one stream: connects, applies each complete update, reconnects with backoff when
/// the stream ends or fails, and clears what it holds once it has been disconnected for
/// `max_age` (a quiet but connected agent is not a stale one).
async fn follow<T, S, F>(
    stream_name: &'static str,
    endpoint: String,
    max_age: Duration,
    changed: Arc<dyn Fn() + Send + Sync>,
    open: impl Fn(WorkloadApiClient) -> F,
    apply: impl Fn(T) -> bool,
    clear: impl Fn() -> bool,
) where
    S: Stream<Item = Result<T, WorkloadApiError>> + Unpin,
    F: Future<Output = Result<S, WorkloadApiError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut last_update: Option<Instant> = None;
    loop {
        let opened = match WorkloadApiClient::connect_to(&endpoint).await {
            Ok(client) => open(client).await,
            Err(error) => Err(error),
        };
        match opened {
            Ok(mut stream) => {
                let mut delivered = false;
                while let Some(update) = stream.next().await {
                    match update {
                        Ok(update) => {
                            delivered = true;
                            let first = last_update.is_none();
                            last_update = Some(Instant::now());
                            backoff = FIRST_BACKOFF;
                            metrics::counter!("tollgate_workload_api_updates_total", "stream" => stream_name).increment(1);
                            if apply(update) {
                                tracing::info!(
                                    stream = stream_name,
                                    first,
                                    "Workload API update applied"
                                );
                                changed();
                            }
                        }
                        Err(error) => {
                            tracing::warn!(stream = stream_name, %error, "Workload API stream failed; reconnecting");
                            break;
                        }
                    }
                }
                // Connected until now: the agent sends updates only when something changes,
                // so what it sent last was current until the stream ended. A connection that
                // delivered nothing usable (every update refused) proves nothing.
                if delivered {
                    last_update = Some(Instant::now());
                }
            }
            Err(error) => {
                tracing::warn!(stream = stream_name, endpoint = %endpoint, %error, retry_in_ms = backoff.as_millis() as u64, "cannot reach the Workload API; keeping the last bundles");
            }
        }
        metrics::counter!("tollgate_workload_api_disconnects_total", "stream" => stream_name)
            .increment(1);
        // Disconnected: past the maximum age, what this stream vouched for goes.
        // `None` also when the deadline is past what a clock can hold: never in practice.
        let expires = last_update.and_then(|at| at.checked_add(max_age));
        if expires.is_some_and(|at| at <= Instant::now()) && clear() {
            tracing::error!(
                stream = stream_name,
                max_age_s = max_age.as_secs(),
                "no Workload API update within its maximum age; dropped its bundles, so their trust domains are refused"
            );
            changed();
        }
        let wake = Instant::now() + backoff;
        tokio::time::sleep_until(
            expires
                .filter(|at| *at > Instant::now())
                .map_or(wake, |at| at.min(wake)),
        )
        .await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
