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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{Notify, watch};
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
pub struct ReloadTrigger(Arc<Pending>);

impl ReloadTrigger {
    /// Requests a reload; a no-op once the reloader has stopped.
    pub fn reload(&self) {
        self.0.mark();
    }
}

/// Changes seen but not yet built: a fixed-size record rather than a queue, so a storm of file
/// events costs no memory, and the rebuild deadline counts from the first change still pending
/// (one that arrived during a build is not made to wait for a fresh `MAX_DELAY`).
#[derive(Debug, Default)]
struct Pending {
    /// First and latest change since the last build began; `None` when nothing is pending.
    span: Mutex<Option<(Instant, Instant)>>,
    wake: Notify,
}

impl Pending {
    fn mark(&self) {
        let now = Instant::now();
        {
            let mut span = self.span.lock().unwrap_or_else(PoisonError::into_inner);
            let first = span.map_or(now, |(first, _)| first);
            *span = Some((first, now));
        }
        self.wake.notify_one();
    }

    /// When to build: after `DEBOUNCE` of quiet, but no later than `MAX_DELAY` after the first
    /// pending change.
    fn due(&self) -> Option<Instant> {
        let span = *self.span.lock().unwrap_or_else(PoisonError::into_inner);
        span.map(|(first, last)| (last + DEBOUNCE).min(first + MAX_DELAY))
    }

    /// Waits until a build is due and clears the record (a change after this point needs
    /// another build); `false` once `stop` turns true.
    async fn next_build(&self, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            // A newer change may push `due` later (up to the cap): re-read after each wake.
            let due = self.due();
            tokio::select! {
                () = self.wake.notified() => {}
                () = sleep_until_due(due) => {
                    *self.span.lock().unwrap_or_else(PoisonError::into_inner) = None;
                    return true;
                }
                _ = stop.wait_for(|stop| *stop) => return false,
            }
        }
    }
}

async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
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
        // Under the policy tree: `.cedar` files, and folders (whatever their name: `forbids.d`
        // moved in brings its policies along). A path that is gone may have been either.
        self.trees.iter().any(|tree| path.starts_with(tree))
            && !name.starts_with('.')
            && (path.extension().is_none_or(|x| x == "cedar") || path.is_dir() || !path.exists())
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Watches what `watched` names: the folders of its files, its trees recursively.
fn watch(
    watched: &Watched,
    settings: &Settings,
    pending: Arc<Pending>,
) -> Result<Option<notify::RecommendedWatcher>, WatchError> {
    if watched.files.is_empty() && watched.trees.is_empty() {
        return Ok(None);
    }
    let relevance = Arc::new(Relevance::new(watched, settings));
    let mut watcher = {
        let relevance = relevance.clone();
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // An error (e.g. the kernel's queue overflowed) may hide a change: rebuild.
            let rebuild = match event {
                Ok(e) => !e.kind.is_access() && e.paths.iter().any(|p| relevance.matters(p)),
                Err(_) => true,
            };
            if rebuild {
                pending.mark();
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
    let pending = Arc::new(Pending::default());
    let watcher = watch(&watched, &config_settings, pending.clone())?;
    let task = tokio::spawn(run(
        Reloader {
            source,
            settings: config_settings,
            snapshots,
            metrics,
            pending: pending.clone(),
            watched,
            watcher,
        },
        stop,
    ));
    let trigger = ReloadTrigger(pending);
    Ok((trigger, task))
}

/// The reload task's state.
struct Reloader {
    source: ConfigSource,
    settings: Settings,
    snapshots: Arc<SnapshotHandle>,
    metrics: Metrics,
    pending: Arc<Pending>,
    watched: Watched,
    /// Held so the OS watch lives as long as this task; replaced when the config names other
    /// files.
    watcher: Option<notify::RecommendedWatcher>,
}

async fn run(mut reloader: Reloader, mut stop: watch::Receiver<bool>) -> Result<(), String> {
    loop {
        if !reloader.pending.next_build(&mut stop).await {
            return Ok(());
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
            match watch(&watched, &reloader.settings, reloader.pending.clone()) {
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
    let started = Instant::now();
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
            let build = started.elapsed();
            metrics.reload_succeeded(generation, policies, build);
            tracing::info!(
                generation,
                policies,
                build_ms = build.as_millis() as u64,
                "configuration reloaded"
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Marks `pending` every `every` until dropped.
    fn churn(pending: &Arc<Pending>, every: Duration) -> tokio::task::JoinHandle<()> {
        let pending = pending.clone();
        tokio::spawn(async move {
            loop {
                pending.mark();
                tokio::time::sleep(every).await;
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_change_builds_after_the_quiet_time() {
        let pending = Pending::default();
        let (_stop, mut stopped) = watch::channel(false);
        let started = Instant::now();
        pending.mark();
        assert!(pending.next_build(&mut stopped).await);
        assert_eq!(started.elapsed(), DEBOUNCE);
        assert_eq!(pending.due(), None, "the record is cleared for the build");
    }

    #[tokio::test(start_paused = true)]
    async fn a_continuous_stream_builds_within_the_cap_each_time() {
        let pending = Arc::new(Pending::default());
        let (_stop, mut stopped) = watch::channel(false);
        let started = Instant::now();
        let stream = churn(&pending, Duration::from_millis(50));
        for n in 1..=3u32 {
            assert!(pending.next_build(&mut stopped).await);
            // The first change of each round is at most one event interval after the build.
            assert!(started.elapsed() <= n * (MAX_DELAY + Duration::from_millis(50)));
        }
        stream.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_build_is_not_made_to_wait_a_fresh_cap() {
        let pending = Arc::new(Pending::default());
        let (_stop, mut stopped) = watch::channel(false);
        pending.mark();
        assert!(pending.next_build(&mut stopped).await);
        // A stream of changes starts while a (slow, 400 ms) build runs.
        let changed = Instant::now();
        let stream = churn(&pending, Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(pending.next_build(&mut stopped).await);
        assert_eq!(changed.elapsed(), MAX_DELAY);
        stream.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_wait() {
        let pending = Pending::default();
        let (stop, mut stopped) = watch::channel(false);
        pending.mark();
        stop.send(true).unwrap();
        assert!(!pending.next_build(&mut stopped).await);
    }
}
