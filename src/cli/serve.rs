//! `tollgate serve`: load config, build the first snapshot, serve until SIGINT/SIGTERM.

use crate::config;
use crate::server;

use super::{ConfigArg, Exit};

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Write decision records (OCSF JSON lines) to FILE, rotated at 100 MiB with 5 kept:
    /// `[audit] file` without a config file, or in place of the config's.
    #[arg(long, value_name = "FILE")]
    audit: Option<std::path::PathBuf>,
    /// Judge new access against FILE, a reviewed `tollgate report --baseline`: `[signals]
    /// baseline` without a config file, or in place of the config's.
    #[arg(long, value_name = "FILE")]
    baseline: Option<std::path::PathBuf>,
}

pub(super) fn run(args: ServeArgs) -> Exit {
    let source = args.config.source();
    let (mut config, snapshot) = match config::load(&source, 1) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(config = %source.config_name(), error = %e, "configuration is invalid; not starting");
            eprintln!("error: {e}");
            return Exit::Invalid;
        }
    };
    if let Some(path) = args.audit {
        config.settings.audit.file = Some(crate::audit::FileSettings {
            path,
            ..crate::audit::FileSettings::default()
        });
    }
    if let Some(path) = args.baseline {
        config.settings.audit.baseline = Some(path);
    }
    tracing::info!(
        config = %source.config_name(),
        policies = snapshot.policies.policy_count(),
        "configuration loaded"
    );
    let prometheus = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()
    {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
            None
        }
    };
    let runtime = match super::runtime(true) {
        Ok(rt) => rt,
        Err(exit) => return exit,
    };
    runtime.block_on(async move {
        let running = match server::start(source, config, snapshot, prometheus).await {
            Ok(running) => running,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Error;
            }
        };
        let stop = running.stopper();
        #[cfg(unix)]
        {
            let reload = running.reload.clone();
            if let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                tokio::spawn(async move {
                    while hangup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading configuration");
                        reload.reload();
                    }
                });
            }
        }
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        match running.wait().await {
            Ok(()) => Exit::Ok,
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Error
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
