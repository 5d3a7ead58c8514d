//! Live reload: watch every file a decision depends on (and `SIGHUP`), rebuild and fully
//! validate a new snapshot off the hot path, and swap it in atomically. A failed build keeps
//! the last good snapshot and says why (log, metric, `/readyz`).
//!
//! Folders are watched rather than files, because editors replace files by rename and
//! Kubernetes ConfigMap volumes swap a `..data` symlink: both show up as events in the folder.
//! Only events for the files the snapshot was built from count (and `..data` swaps, and
//! `.cedar` files and folders under the policy folder); anything else in those folders,
//! Tollgate's own audit log included, is ignored. After each reload the watch follows what
//! the new configuration names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::audit::AuditTarget;
use crate::config::{Config, ConfigSource, Settings, Watched};
use crate::metrics::Metrics;
use crate::snapshot::SnapshotHandle;

/// Quiet time after the last file event before rebuilding; editors and ConfigMap updates touch
/// several files in a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Longest a rebuild waits after the first event of a burst, however long the burst lasts, so a
/// change takes effect within a second even under a continuous stream of events.
pub const MAX_DELAY: Duration = Duration::from_millis(500);

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

/// Which file events mean "rebuild".
#[derive(Debug, Clone, Default)]
struct Relevance {
    files: BTreeSet<PathBuf>,
    folders: BTreeSet<PathBuf>,
    trees: Vec<PathBuf>,
    /// Tollgate's own outputs (audit log, Unix socket), never a reason to rebuild.
    outputs: BTreeSet<PathBuf>,
}

impl Relevance {
    fn new(watched: &Watched, settings: &Settings) -> Self {
        let files: BTreeSet<PathBuf> = watched.files.iter().map(|p| absolute(p)).collect();
        let folders = files
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        let audit = match &settings.audit {
            Some(AuditTarget::File(path)) => Some(absolute(path)),
            _ => None,
        };
        Self {
            files,
            folders,
            trees: watched.trees.iter().map(|p| absolute(p)).collect(),
            outputs: audit
                .into_iter()
                .chain(settings.unix_socket.as_deref().map(absolute))
                .collect(),
        }
    }

    fn matters(&self, path: &Path) -> bool {
        if self.outputs.contains(path) {
            return false;
        }
        if self.files.contains(path) {
            return true;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let parent = path.parent().unwrap_or(Path::new(""));
        // A ConfigMap update: the `..data` symlink (or its `..data_tmp` stand-in) is swapped.
        if name.starts_with("..data")
            && (self.folders.contains(parent) || self.trees.iter().any(|t| parent.starts_with(t)))
        {
            return true;
        }
        self.trees.iter().any(|tree| path.starts_with(tree))
            && !name.starts_with('.')
            && path.extension().is_none_or(|x| x == "cedar")
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Watches what `watched` names: the folders of its files, its trees recursively.
fn watch(
    watched: &Watched,
    settings: &Settings,
    events: mpsc::UnboundedSender<()>,
) -> Result<Option<notify::RecommendedWatcher>, WatchError> {
    if watched.files.is_empty() && watched.trees.is_empty() {
        return Ok(None);
    }
    let relevance = Relevance::new(watched, settings);
    let mut watcher = {
        let relevance = relevance.clone();
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // An error (e.g. the kernel's queue overflowed) may hide a change: rebuild.
            let rebuild = match event {
                Ok(e) => !e.kind.is_access() && e.paths.iter().any(|p| relevance.matters(p)),
                Err(_) => true,
            };
            if rebuild {
                let _ = events.send(());
            }
        })
        .map_err(|source| WatchError {
            path: "-".into(),
            source,
        })?
    };
    for folder in &relevance.folders {
        watcher
            .watch(folder, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError {
                path: folder.display().to_string(),
                source,
            })?;
    }
    for tree in &relevance.trees {
        watcher
            .watch(tree, RecursiveMode::Recursive)
            .map_err(|source| WatchError {
                path: tree.display().to_string(),
                source,
            })?;
    }
    tracing::info!(
        folders = ?relevance.folders,
        trees = ?relevance.trees,
        "watching for configuration changes"
    );
    Ok(Some(watcher))
}

/// Starts watching what `config` was built from (nothing for the embedded default) and a task
/// that rebuilds on change or trigger until `stop` turns true.
pub fn start(
    source: ConfigSource,
    config_settings: Settings,
    watched: Watched,
    snapshots: Arc<SnapshotHandle>,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
) -> Result<(ReloadTrigger, tokio::task::JoinHandle<Result<(), String>>), WatchError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let trigger = ReloadTrigger(tx.clone());
    let watcher = watch(&watched, &config_settings, tx.clone())?;
    let task = tokio::spawn(run(
        Reloader {
            source,
            settings: config_settings,
            snapshots,
            metrics,
            events: tx,
            watched,
            watcher,
        },
        rx,
        stop,
    ));
    Ok((trigger, task))
}

/// The reload task's state.
struct Reloader {
    source: ConfigSource,
    settings: Settings,
    snapshots: Arc<SnapshotHandle>,
    metrics: Metrics,
    events: mpsc::UnboundedSender<()>,
    watched: Watched,
    /// Held so the OS watch lives as long as this task; replaced when the config names other
    /// files.
    watcher: Option<notify::RecommendedWatcher>,
}

async fn run(
    mut reloader: Reloader,
    mut requests: mpsc::UnboundedReceiver<()>,
    mut stop: watch::Receiver<bool>,
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
        // Debounce: wait until the burst is over, but never longer than MAX_DELAY in all.
        let deadline = Instant::now() + MAX_DELAY;
        loop {
            let quiet = (Instant::now() + DEBOUNCE).min(deadline);
            tokio::select! {
                more = tokio::time::timeout_at(quiet, requests.recv()) => match more {
                    Ok(Some(())) if Instant::now() < deadline => continue,
                    Ok(Some(())) | Ok(None) | Err(_) => break,
                },
                _ = stop.wait_for(|stop| *stop) => return Ok(()),
            }
        }
        let rebuilt = reload(
            &reloader.source,
            &reloader.settings,
            &reloader.snapshots,
            &reloader.metrics,
        )
        .await;
        if let Some(watched) = rebuilt
            && watched != reloader.watched
        {
            match watch(&watched, &reloader.settings, reloader.events.clone()) {
                Ok(watcher) => {
                    reloader.watcher = watcher;
                    reloader.watched = watched;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot watch what the new configuration names; still watching the old files");
                }
            }
        }
    }
}

/// Builds a new snapshot from `source` and swaps it in, or keeps the current one and records
/// why. Returns what the new snapshot was built from, when it was swapped in.
pub async fn reload(
    source: &ConfigSource,
    settings: &Settings,
    snapshots: &SnapshotHandle,
    metrics: &Metrics,
) -> Option<Watched> {
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
            Some(config.watched)
        }
        Ok(Err(error)) => {
            let message = error.to_string();
            tracing::error!(error = %message, "reload failed; keeping the last good configuration");
            metrics.reload_failed();
            snapshots.reload_failed(message);
            None
        }
        Err(join) => {
            tracing::error!(error = %join, "reload task failed; keeping the last good configuration");
            metrics.reload_failed();
            snapshots.reload_failed(join.to_string());
            None
        }
    }
}
