//! mTLS on the gRPC listener with Tollgate's own X.509-SVID from the Workload API, rotated in
//! place: every handshake takes the SVID and the own trust domain's bundle current at that
//! moment (the rustls configuration is rebuilt only when the stream changed them), so a
//! rotation reaches new connections at once and drops no open one. Clients (Envoy) must
//! present a certificate that chains to the own trust domain's bundle.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, StreamExt};

use crate::fetch::workload::Streams;
use crate::identity::bundle::parse_bundle;
use crate::identity::spiffe::SpiffeId;
use crate::snapshot::source::Streamed;

/// Handshakes in progress at once.
const MAX_HANDSHAKES: usize = 256;

/// Longest a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configuration the Workload API's latest SVID and bundle make.
pub struct SvidTls {
    streams: Arc<Streams>,
    current: Mutex<Option<(u64, Arc<rustls::ServerConfig>)>>,
}

impl SvidTls {
    /// Follows what `streams` holds.
    pub fn new(streams: Arc<Streams>) -> Self {
        Self {
            streams,
            current: Mutex::new(None),
        }
    }

    /// The configuration for a handshake starting now, or why there is none (no SVID yet).
    pub fn config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let version = self.streams.version();
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built, config)) = &*current
            && *built == version
        {
            return Ok(config.clone());
        }
        let config = Arc::new(self.build()?);
        *current = Some((version, config.clone()));
        Ok(config)
    }

    fn build(&self) -> Result<rustls::ServerConfig, String> {
        let svid = self
            .streams
            .own_svid()
            .ok_or("the Workload API has sent no SVID for Tollgate yet")?;
        let id = SpiffeId::parse_workload(&svid.spiffe_id).map_err(|e| e.to_string())?;
        let bundle = self
            .streams
            .read(&Streamed::X509Bundle(id.trust_domain().to_owned()))
            .ok_or_else(|| format!("no bundle for `{}` yet", id.trust_domain()))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in parse_bundle(&bundle).map_err(|e| e.to_string())? {
            roots.add(ca).map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
        let chain = svid.chain.into_iter().map(CertificateDer::from).collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.key));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| format!("the SVID's key does not fit its certificate: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// TLS connections from `tcp`, each handshake on its own task (a slow client holds up no one)
/// with the configuration current when it began. A connection that fails its handshake, or
/// arrives before there is an SVID, is closed and logged.
pub fn incoming<I>(
    tcp: I,
    tls: Arc<SvidTls>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> + Send + 'static
where
    I: Stream<Item = Result<TcpStream, io::Error>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        tokio::pin!(tcp);
        loop {
            // Ends when the server stops taking connections (it dropped the receiver), so the
            // listening socket is released with it.
            let accepted = tokio::select! {
                accepted = tcp.next() => accepted,
                () = tx.closed() => None,
            };
            let Some(accepted) = accepted else { return };
            let stream = match accepted {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    continue;
                }
            };
            let config = match tls.config() {
                Ok(config) => config,
                Err(error) => {
                    tracing::warn!(%error, "refusing a TLS connection: no SVID to serve with");
                    continue;
                }
            };
            // Bounded: a flood of connections that never finish their handshake waits here
            // (in the kernel's backlog) rather than costing a task each.
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
