//! Runs the listeners for a loaded config until shutdown: the one place `serve` and the
//! integration tests share, so tests exercise exactly what ships.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::admin;
use crate::audit::AuditLog;
use crate::authz::{Authorizer, Caches};
use crate::config::{Config, ConfigSource, Settings};
use crate::fetch::Fetcher;
use crate::grpc::svid_tls::SvidTls;
use crate::grpc::{self, Admission, CheckService};
use crate::http;
use crate::metrics::Metrics;
use crate::reload::{self, ReloadTrigger};
use crate::snapshot::{Snapshot, SnapshotHandle};

/// A running Tollgate.
#[derive(Debug)]
pub struct Running {
    /// Bound ext_authz address (useful with port 0).
    pub grpc_addr: SocketAddr,
    /// Bound admin address, if enabled.
    pub admin_addr: Option<SocketAddr>,
    /// Bound HTTP forward-auth (and AuthZEN) address, if enabled.
    pub http_addr: Option<SocketAddr>,
    /// Bound AuthZEN-only address, if enabled.
    pub authzen_addr: Option<SocketAddr>,
    /// The snapshot handle (reload swaps it).
    pub snapshots: Arc<SnapshotHandle>,
    /// Requests a reload (the `serve` command wires `SIGHUP` to it).
    pub reload: ReloadTrigger,
    stop: watch::Sender<bool>,
    /// Every background task, by name; any ending before a shutdown stops them all.
    tasks: Tasks,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Unix socket could not be bound.
    #[error("cannot listen on unix socket {path}: {source}")]
    BindUnix {
        /// The socket path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration files could not be watched.
    #[error("{0}")]
    Watch(String),
    /// The audit log could not be opened.
    #[error("cannot open the audit sinks: {0}")]
    Audit(String),
    /// The client for fetched documents could not be set up.
    #[error("cannot fetch documents: {0}")]
    Fetch(String),
    /// A listener failed while serving.
    #[error("listener failed: {0}")]
    Listener(String),
}

/// Binds the listeners and starts serving `snapshot` (built from `config`) in background
/// tasks; watches `source`'s files and rebuilds on change.
pub async fn start(
    source: ConfigSource,
    config: Config,
    snapshot: Snapshot,
    prometheus: Option<PrometheusHandle>,
) -> Result<Running, ServeError> {
    crate::clock::prepare();
    let settings = config.settings.clone();
    let demo = matches!(source, ConfigSource::Embedded);
    if demo {
        tracing::warn!(
            "serving the embedded DEMO estate: anyone can mint credentials it accepts \
             (`tollgate demo-credentials`); never use it beyond a laptop. Pass --config FILE"
        );
    }
    // Documents are the config's files, plus key sets fetched for issuers that name a URL.
    // The first snapshot was built from files alone; with fetched issuers it is built once
    // more through the fetcher, which starts following their keys (the issuers refuse tokens
    // `token_keys_unavailable`, and `/readyz` waits, until the first set arrives).
    let fetcher = Arc::new(
        Fetcher::new(Arc::new(source.clone()), &settings.fetch).map_err(ServeError::Fetch)?,
    );
    if let Some(workload_api) = &settings.workload_api {
        fetcher.follow_workload_api(workload_api);
    }
    let snapshot = if config.spec.has_live_sources() || settings.workload_api.is_some() {
        config
            .build(&*fetcher, snapshot.generation)
            .map_err(|e| ServeError::Fetch(e.to_string()))?
    } else {
        snapshot
    };
    let metrics = Metrics;
    metrics.snapshot_loaded(snapshot.generation, snapshot.policies.policy_count());
    let snapshots = Arc::new(SnapshotHandle::new(snapshot));
    let caches = Caches::new(settings.cache_max_entries, settings.cache_ttl_seconds);
    let (stop, stopped) = watch::channel(false);

    let mut tasks = Vec::new();
    let audit = open_audit(&settings, &mut tasks).await?;
    let audit_view = audit.view();
    let authorizer = Arc::new(Authorizer::new(snapshots.clone(), caches, audit));
    // A benchmark build says so, and makes its probe's key before the first Check.
    #[cfg(feature = "signature-probe")]
    tracing::warn!(
        probe_verifies = crate::signature_probe::verify_once(),
        "signature-probe build: every gRPC Check first verifies a fixed ES256 signature; \
         for benchmarks only, never to serve traffic"
    );
    // The listener's own SVID, when it serves mTLS with one from the Workload API.
    let svid_tls = settings
        .workload_api_tls
        .then(|| Arc::new(SvidTls::new(fetcher.streams())));
    let (grpc_addr, [http_addr, authzen_addr]) =
        spawn_check_listeners(&settings, authorizer, svid_tls, &stopped, &mut tasks).await?;

    if let Some(handle) = prometheus.clone() {
        let shutdown = until_stopped(stopped.clone());
        tasks.push((
            "metrics upkeep",
            tokio::spawn(async move {
                crate::metrics::upkeep(handle, shutdown).await;
                Ok(())
            }),
        ));
    }
    let mut admin_addr = None;
    if let Some(addr) = settings.admin_listen {
        let listener = bind(addr).await?;
        admin_addr = Some(local_addr(&listener, addr)?);
        let shutdown = until_stopped(stopped.clone());
        let snapshots = snapshots.clone();
        tasks.push((
            "admin listener",
            tokio::spawn(async move {
                admin::serve(listener, prometheus, snapshots, audit_view, demo, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));
    }
    let (reload, reloader) = reload::start(
        source,
        fetcher.clone(),
        config,
        snapshots.clone(),
        Metrics,
        stopped.clone(),
    )
    .map_err(|e| ServeError::Watch(e.to_string()))?;
    tasks.push(("reloader", reloader));
    let trigger = reload.clone();
    fetcher.on_change(move || trigger.identity_changed());
    tracing::info!(
        grpc.addr = %grpc_addr,
        grpc.tls = settings.tls.is_some() || settings.workload_api_tls,
        grpc.unix_socket = ?settings.unix_socket,
        admin.addr = ?admin_addr,
        http.addr = ?http_addr,
        authzen.addr = ?authzen_addr,
        "tollgate listening"
    );
    Ok(Running {
        grpc_addr,
        admin_addr,
        http_addr,
        authzen_addr,
        snapshots,
        reload,
        stop,
        tasks,
    })
}

impl Running {
    /// Stops accepting, drains in-flight requests, and waits for the listeners to finish.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until every task has stopped. A task that ends before a shutdown was asked for
    /// (a listener that failed, or one that simply stopped) stops the whole process: a sidecar
    /// half of whose listeners are gone must not look alive.
    pub async fn wait(self) -> Result<(), ServeError> {
        supervise(self.tasks, &self.stop).await
    }

    /// A handle that triggers shutdown from elsewhere (e.g. a signal handler).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Tasks [`Running::wait`] supervises, by name.
type Tasks = Vec<(&'static str, JoinHandle<Result<(), String>>)>;

/// Resolves once `stop` turns true (or its sender is gone).
async fn until_stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The audit log the settings ask for (always on: with no sink it still keeps the live
/// inventory), its writer added to `tasks`.
async fn open_audit(settings: &Settings, tasks: &mut Tasks) -> Result<AuditLog, ServeError> {
    let (log, writer) = AuditLog::start(&settings.audit, Metrics).map_err(ServeError::Audit)?;
    let sinks = settings.audit.sinks();
    if !sinks.is_empty() {
        tracing::info!(sinks = %sinks.join(", "), "decision records (OCSF API Activity) on");
    }
    tasks.push(("audit writer", writer));
    Ok(log)
}

/// Binds the ext_authz listeners (TCP, and the Unix socket if configured) and the HTTP
/// forward-auth listener (if configured) behind one shared admission, and returns the bound
/// gRPC and HTTP addresses.
async fn spawn_check_listeners(
    settings: &Settings,
    authorizer: Arc<Authorizer>,
    svid_tls: Option<Arc<SvidTls>>,
    stopped: &watch::Receiver<bool>,
    tasks: &mut Tasks,
) -> Result<(SocketAddr, [Option<SocketAddr>; 2]), ServeError> {
    let grpc_listener = bind(settings.listen).await?;
    let grpc_addr = local_addr(&grpc_listener, settings.listen)?;
    let service = grpc::CheckServer::new(CheckService::new(authorizer.clone()));
    // One admission for every listener: the limit is the process's, not each socket's.
    let admission = Admission::new(settings.max_concurrent_requests, settings.request_timeout)
        .recorded_by(authorizer.clone());
    let tls = match &settings.tls {
        Some(tls) => Some(http::server_tls(tls).map_err(ServeError::Listener)?),
        None => None,
    };
    let doors = Arc::new(http::Doors::new(
        authorizer,
        admission.clone(),
        http::Proxies::new(settings.trusted_proxies.clone()),
    ));
    let mut http_addrs = [None, None];
    for (i, addr, mount, name) in [
        (0, settings.http_listen, http::Mount::All, "http listener"),
        (
            1,
            settings.authzen_listen,
            http::Mount::AuthZenOnly,
            "authzen listener",
        ),
    ] {
        let Some(addr) = addr else { continue };
        let listener = bind(addr).await?;
        if let Some(slot) = http_addrs.get_mut(i) {
            *slot = Some(local_addr(&listener, addr)?);
        }
        let handler = Arc::new(http::Mounted {
            doors: doors.clone(),
            mount,
        });
        let (tls, idle) = (tls.clone(), settings.http_idle_timeout);
        let shutdown = until_stopped(stopped.clone());
        tasks.push((
            name,
            tokio::spawn(async move {
                http::serve(listener, handler, tls, idle, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));
    }
    if let Some(path) = &settings.unix_socket {
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(bind_unix(path)?);
        let shutdown = until_stopped(stopped.clone());
        let (service, admission) = (service.clone(), admission.clone());
        tasks.push((
            "unix socket listener",
            tokio::spawn(async move {
                grpc::serve(incoming, service, &admission, None, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));
    }
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    if let Some(svid_tls) = svid_tls {
        let incoming = grpc::svid_tls::incoming(incoming, svid_tls);
        let shutdown = until_stopped(stopped.clone());
        tasks.push((
            "grpc listener",
            tokio::spawn(async move {
                grpc::serve(incoming, service, &admission, None, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));
        return Ok((grpc_addr, http_addrs));
    }
    let shutdown = until_stopped(stopped.clone());
    let tls = settings.tls.clone();
    tasks.push((
        "grpc listener",
        tokio::spawn(async move {
            grpc::serve(incoming, service, &admission, tls.as_ref(), shutdown)
                .await
                .map_err(|e| e.to_string())
        }),
    ));
    Ok((grpc_addr, http_addrs))
}

/// Waits for every task; the first to end before `stop` was set sets it (stopping the rest)
/// and is the error returned.
async fn supervise(tasks: Tasks, stop: &watch::Sender<bool>) -> Result<(), ServeError> {
    let mut running = tokio::task::JoinSet::new();
    for (name, task) in tasks {
        running.spawn(async move { (name, task.await) });
    }
    let mut failure = None;
    while let Some(joined) = running.join_next().await {
        let (name, ended) = match joined {
            Ok((name, Ok(ended))) => (name, ended),
            Ok((name, Err(panicked))) => (name, Err(panicked.to_string())),
            Err(join) => ("task", Err(join.to_string())),
        };
        let stopping = *stop.borrow();
        let why = match ended {
            Ok(()) if stopping => continue,
            Ok(()) => "stopped unexpectedly".to_owned(),
            Err(error) => error,
        };
        tracing::error!(task = name, error = %why, "a server task ended; stopping");
        let _ = stop.send(true);
        failure.get_or_insert(ServeError::Listener(format!("{name}: {why}")));
    }
    failure.map_or(Ok(()), Err)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Binds a Unix socket, replacing a stale socket file left by an earlier run.
fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener, ServeError> {
    let unix_error = |source: std::io::Error| ServeError::BindUnix {
        path: path.display().to_string(),
        source,
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        std::fs::remove_file(path).map_err(unix_error)?;
    }
    tokio::net::UnixListener::bind(path).map_err(unix_error)
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServeError> {
    listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_ending_early_stops_the_others_and_is_the_error() {
        let (stop, stopped) = watch::channel(false);
        let listener = |mut stopped: watch::Receiver<bool>| {
            tokio::spawn(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
                Ok(())
            })
        };
        let tasks = vec![
            ("grpc listener", listener(stopped.clone())),
            (
                "unix socket listener",
                tokio::spawn(async { Err("accept failed".to_owned()) }),
            ),
            ("admin listener", listener(stopped.clone())),
        ];
        let error = supervise(tasks, &stop).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "listener failed: unix socket listener: accept failed"
        );
        assert!(*stop.borrow(), "the others were told to stop");
    }

    #[tokio::test]
    async fn a_listener_that_just_stops_is_a_failure_too() {
        let (stop, _stopped) = watch::channel(false);
        let tasks = vec![("admin listener", tokio::spawn(async { Ok(()) }))];
        let error = supervise(tasks, &stop).await.unwrap_err();
        assert!(
            error.to_string().contains("stopped unexpectedly"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_shutdown_is_not_a_failure() {
        let (stop, _stopped) = watch::channel(false);
        let _ = stop.send(true);
        let tasks = vec![("grpc listener", tokio::spawn(async { Ok(()) }))];
        assert!(supervise(tasks, &stop).await.is_ok());
    }
}
