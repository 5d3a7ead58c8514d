//! Live reload: watch every file a decision depends on (and `SIGHUP`), rebuild and fully
//! validate a new snapshot off the hot path, and swap it in atomically. A failed build keeps
//! the last good snapshot and says why (log, metric, `/readyz`).
//!
//! Folders are watched rather than files, because editors replace files by rename and
//! Kubernetes ConfigMap volumes swap a `..data` symlink: both show up as events in the folder.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, ConfigSource, Settings};
use crate::metrics::Metrics;
use crate::snapshot::SnapshotHandle;

/// Quiet time after the last file event before rebuilding; editors and ConfigMap updates touch
/// several files in a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Asks the reloader to rebuild now (e.g. on `SIGHUP`).
#[derive(Debug, Clone)]
pub struct ReloadTrigger(mpsc::UnboundedSender<()>);

impl ReloadTrigger {
    /// Requests a reload; a no-op once the reloader has stopped.
    pub fn reload(&self) {
        let _ = self.0.send(());
    }
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    path: String,
    source: notify::Error,
}

/// Starts watching the folders of every file `config` was built from (nothing for the embedded
/// default) and a task that rebuilds on change or trigger until `stop` turns true.
pub fn start(
    source: ConfigSource,
    config_settings: Settings,
    watched: Vec<PathBuf>,
    snapshots: Arc<SnapshotHandle>,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
) -> Result<(ReloadTrigger, tokio::task::JoinHandle<Result<(), String>>), WatchError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let trigger = ReloadTrigger(tx.clone());
    let watcher = if watched.is_empty() {
        None
    } else {
        let events = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = events.send(());
                }
            })
            .map_err(|source| WatchError {
                path: "-".into(),
                source,
            })?;
        let folders: BTreeSet<PathBuf> = watched
            .iter()
            .map(|p| {
                if p.is_dir() {
                    p.clone()
                } else {
                    p.parent().map(PathBuf::from).unwrap_or_default()
                }
            })
            .collect();
        for folder in &folders {
            watcher
                .watch(folder, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError {
                    path: folder.display().to_string(),
                    source,
                })?;
        }
        tracing::info!(folders = ?folders, "watching for configuration changes");
        Some(watcher)
    };
    let task = tokio::spawn(run(
        source,
        config_settings,
        snapshots,
        metrics,
        rx,
        stop,
        watcher,
    ));
    Ok((trigger, task))
}

async fn run(
    source: ConfigSource,
    settings: Settings,
    snapshots: Arc<SnapshotHandle>,
    metrics: Metrics,
    mut requests: mpsc::UnboundedReceiver<()>,
    mut stop: watch::Receiver<bool>,
    // Held so the OS watch lives as long as this task.
    _watcher: Option<notify::RecommendedWatcher>,
) -> Result<(), String> {
    loop {
        tokio::select! {
            request = requests.recv() => {
                if request.is_none() {
                    return Ok(());
                }
            }
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        }
        // Debounce: wait until the burst is over, then rebuild once.
        loop {
            tokio::select! {
                more = tokio::time::timeout(DEBOUNCE, requests.recv()) => match more {
                    Ok(Some(())) => continue,
                    Ok(None) | Err(_) => break,
                },
                _ = stop.wait_for(|stop| *stop) => return Ok(()),
            }
        }
        reload(&source, &settings, &snapshots, &metrics).await;
    }
}

/// Builds a new snapshot from `source` and swaps it in, or keeps the current one and records why.
pub async fn reload(
    source: &ConfigSource,
    settings: &Settings,
    snapshots: &SnapshotHandle,
    metrics: &Metrics,
) {
    let generation = snapshots.load().generation + 1;
    let built = {
        let source = source.clone();
        tokio::task::spawn_blocking(move || Config::load(&source, generation)).await
    };
    match built {
        Ok(Ok(config)) => {
            if config.settings != *settings {
                tracing::warn!(
                    "[server], [cache] or [audit] settings changed; they apply after a restart"
                );
            }
            let policies = config.snapshot.policies.policy_count();
            snapshots.store(config.snapshot);
            metrics.reload_succeeded(generation, policies);
            tracing::info!(generation, policies, "configuration reloaded");
        }
        Ok(Err(error)) => {
            let message = error.to_string();
            tracing::error!(error = %message, "reload failed; keeping the last good configuration");
            metrics.reload_failed();
            snapshots.reload_failed(message);
        }
        Err(join) => {
            tracing::error!(error = %join, "reload task failed; keeping the last good configuration");
            metrics.reload_failed();
            snapshots.reload_failed(join.to_string());
        }
    }
}
