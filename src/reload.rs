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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::config::{Config, ConfigError, ConfigSource, Settings, Watched};
use crate::metrics::Metrics;
use crate::snapshot::build::rebuild_identity;
use crate::snapshot::source::Source;
use crate::snapshot::{Snapshot, SnapshotHandle};

/// Quiet time after the last file event before rebuilding; editors and ConfigMap updates touch
/// several files in a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Longest a rebuild waits after the first event of a burst, however long the burst lasts, so a
/// change takes effect within a second even under a continuous stream of events.
pub const MAX_DELAY: Duration = Duration::from_millis(500);

/// What a rebuild has to redo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Only a document the config names changed (a bundle, a JWKS, a policy file), or a
    /// fetched one did: build again from the spec in force, without reading the config.
    Documents,
    /// The config file changed, or a reload was asked for: parse it again, then build.
    Config,
}

/// Asks the reloader to rebuild (e.g. on `SIGHUP`, or when a fetched document changed).
#[derive(Debug, Clone)]
pub struct ReloadTrigger(Arc<Pending>);

impl ReloadTrigger {
    /// Requests a full reload: the config is parsed again; a no-op once the reloader has
    /// stopped.
    pub fn reload(&self) {
        self.0.mark(Change::Config);
    }

    /// Says a document changed (a file, or one fetched or streamed at run time): the snapshot
    /// is built again from the spec in force, through the same build, validation and swap.
    pub fn documents_changed(&self) {
        self.0.mark(Change::Documents);
    }

    /// Says a fetched or streamed identity document changed (a key set, a bundle): as
    /// [`Self::documents_changed`], and should the build fail for another reason (a policy
    /// file mid-edit), the identity is renewed on the last good policies anyway.
    pub fn identity_changed(&self) {
        self.0.live.store(true, Ordering::Release);
        self.0.mark(Change::Documents);
    }
}

/// Changes seen but not yet built: a fixed-size record rather than a queue, so a storm of file
/// events costs no memory, and the rebuild deadline counts from the first change still pending
/// (one that arrived during a build is not made to wait for a fresh `MAX_DELAY`).
#[derive(Debug, Default)]
struct Pending {
    /// Since the last build began: the first and latest change, and the most a rebuild has to
    /// redo; `None` when nothing is pending.
    span: Mutex<Option<(Instant, Instant, Change)>>,
    wake: Notify,
    /// A live identity document changed since a build last took it in.
    live: AtomicBool,
}

impl Pending {
    fn mark(&self, change: Change) {
        let now = Instant::now();
        {
            let mut span = self.span.lock().unwrap_or_else(PoisonError::into_inner);
            let (first, redo) =
                span.map_or((now, change), |(first, _, redo)| (first, redo.max(change)));
            *span = Some((first, now, redo));
        }
        self.wake.notify_one();
    }

    /// When to build: after `DEBOUNCE` of quiet, but no later than `MAX_DELAY` after the first
    /// pending change.
    fn due(&self) -> Option<Instant> {
        let span = *self.span.lock().unwrap_or_else(PoisonError::into_inner);
        span.map(|(first, last, _)| (last + DEBOUNCE).min(first + MAX_DELAY))
    }

    /// Waits until a build is due and clears the record (a change after this point needs
    /// another build); `None` once `stop` turns true.
    async fn next_build(&self, stop: &mut watch::Receiver<bool>) -> Option<Change> {
        loop {
            // A newer change may push `due` later (up to the cap): re-read after each wake.
            let due = self.due();
            tokio::select! {
                () = self.wake.notified() => {}
                () = sleep_until_due(due) => {
                    let taken = self.span.lock().unwrap_or_else(PoisonError::into_inner).take();
                    if let Some((_, _, change)) = taken {
                        return Some(change);
                    }
                }
                _ = stop.wait_for(|stop| *stop) => return None,
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

/// Which file events mean "rebuild", and how much.
#[derive(Debug, Clone, Default)]
struct Relevance {
    config: Option<PathBuf>,
    files: BTreeSet<PathBuf>,
    folders: BTreeSet<PathBuf>,
    trees: Vec<PathBuf>,
    /// Folders (of files, or trees) that do not exist yet; their nearest existing ancestor is
    /// watched in their place, and an event on the way down to one means it may have arrived.
    missing: BTreeSet<PathBuf>,
    /// Tollgate's own outputs (audit log, Unix socket), never a reason to rebuild.
    outputs: BTreeSet<PathBuf>,
}

impl Relevance {
    fn new(watched: &Watched, settings: &Settings) -> Self {
        let config = watched.config.as_deref().map(absolute);
        let files: BTreeSet<PathBuf> = watched.files.iter().map(|p| absolute(p)).collect();
        let folders: BTreeSet<PathBuf> = files
            .iter()
            .chain(config.iter())
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        let trees: Vec<PathBuf> = watched.trees.iter().map(|p| absolute(p)).collect();
        let missing = folders
            .iter()
            .chain(&trees)
            .filter(|p| !p.is_dir())
            .cloned()
            .collect();
        let audit = settings.audit.file.as_ref().map(|f| absolute(&f.path));
        Self {
            config,
            files,
            folders,
            trees,
            missing,
            outputs: audit
                .into_iter()
                .chain(settings.unix_socket.as_deref().map(absolute))
                .collect(),
        }
    }

    /// What a watcher event asks of a rebuild, if anything. An error, or a notice that events
    /// were lost (the kernel's queue overflowed: notify's `Rescan`), may hide any change: reload
    /// everything.
    fn of(&self, event: &notify::Result<notify::Event>) -> Option<Change> {
        match event {
            Err(_) => Some(Change::Config),
            Ok(e) if e.need_rescan() => Some(Change::Config),
            Ok(e) if e.kind.is_access() => None,
            Ok(e) => e.paths.iter().filter_map(|p| self.change(p)).max(),
        }
    }

    /// A rotated copy of an output (`audit.log.1`, …).
    fn is_rotated_output(&self, path: &Path) -> bool {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let name = name.to_string_lossy();
        let Some((stem, number)) = name.rsplit_once('.') else {
            return false;
        };
        !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && self.outputs.contains(&parent.join(stem))
    }

    /// What an event at `path` asks of a rebuild, if anything.
    fn change(&self, path: &Path) -> Option<Change> {
        if self.outputs.contains(path) || self.is_rotated_output(path) {
            return None;
        }
        if self.config.as_deref() == Some(path) {
            return Some(Change::Config);
        }
        if self.files.contains(path) {
            return Some(Change::Documents);
        }
        // A folder appeared on the way to one the config names: it may bring what a failed
        // build was missing.
        if self.missing.iter().any(|m| m.starts_with(path)) {
            return Some(Change::Config);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let parent = path.parent().unwrap_or(Path::new(""));
        // A ConfigMap update: the `..data` symlink (or its `..data_tmp` stand-in) is swapped,
        // and the config may be among the files it brings.
        if name.starts_with("..data")
            && (self.folders.contains(parent) || self.trees.iter().any(|t| parent.starts_with(t)))
        {
            return Some(Change::Config);
        }
        // Under the policy tree: `.cedar` files, and folders (whatever their name: `forbids.d`
        // moved in brings its policies along). A path that is gone may have been either.
        let policy = self.trees.iter().any(|tree| path.starts_with(tree))
            && !name.starts_with('.')
            && (path.extension().is_none_or(|x| x == "cedar") || path.is_dir() || !path.exists());
        policy.then_some(Change::Documents)
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A live watch: what it covers, and the folders it waits for.
#[derive(Default)]
struct Watch {
    /// Held so the OS watch lives as long as this; `None` for the embedded default.
    #[expect(dead_code, reason = "held for its drop: the OS watch ends with it")]
    watcher: Option<notify::RecommendedWatcher>,
    covers: Watched,
    missing: BTreeSet<PathBuf>,
}

/// Watches what `watched` names: the folders of its files, its trees recursively, and for a
/// folder that does not exist yet its nearest existing ancestor.
fn watch(
    watched: &Watched,
    settings: &Settings,
    pending: Arc<Pending>,
) -> Result<Watch, WatchError> {
    if watched.config.is_none() && watched.files.is_empty() && watched.trees.is_empty() {
        return Ok(Watch::default());
    }
    let relevance = Arc::new(Relevance::new(watched, settings));
    let mut watcher = {
        let relevance = relevance.clone();
        let pending = pending.clone();
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Some(change) = relevance.of(&event) {
                pending.mark(change);
            }
        })
        .map_err(|source| WatchError {
            path: "-".into(),
            source,
        })?
    };
    let folders = relevance
        .folders
        .iter()
        .map(|f| (f, RecursiveMode::NonRecursive));
    let trees = relevance
        .trees
        .iter()
        .map(|t| (t, RecursiveMode::Recursive));
    for (path, mode) in folders.chain(trees) {
        let (path, mode) = match relevance.missing.contains(path) {
            false => (path.as_path(), mode),
            true => (nearest_existing(path), RecursiveMode::NonRecursive),
        };
        watcher.watch(path, mode).map_err(|source| WatchError {
            path: path.display().to_string(),
            source,
        })?;
    }
    // One that appeared before its stand-in was watched made no event the watch saw.
    if relevance.missing.iter().any(|m| m.is_dir()) {
        pending.mark(Change::Config);
    }
    tracing::info!(
        folders = ?relevance.folders,
        trees = ?relevance.trees,
        missing = ?relevance.missing,
        "watching for configuration changes"
    );
    Ok(Watch {
        watcher: Some(watcher),
        covers: watched.clone(),
        missing: relevance.missing.clone(),
    })
}

/// `path`, or its nearest ancestor that is a folder.
fn nearest_existing(path: &Path) -> &Path {
    path.ancestors()
        .find(|a| a.is_dir())
        .unwrap_or(Path::new("/"))
}

/// Starts watching what `config` was built from (nothing for the embedded default) and a task
/// that rebuilds on change or trigger until `stop` turns true: the config read from `source`,
/// the documents it names from `documents`.
pub fn start(
    source: ConfigSource,
    documents: Arc<dyn Source>,
    config: Config,
    snapshots: Arc<SnapshotHandle>,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
) -> Result<(ReloadTrigger, tokio::task::JoinHandle<Result<(), String>>), WatchError> {
    let pending = Arc::new(Pending::default());
    let watch = watch(&config.watched, &config.settings, pending.clone())?;
    let reloader = Reloader {
        documents,
        source,
        watch,
        stale: false,
        started_with: config.settings.clone(),
        config: Arc::new(config),
        snapshots,
        metrics,
        pending: pending.clone(),
    };
    let task = tokio::spawn(run(reloader, stop));
    Ok((ReloadTrigger(pending), task))
}

/// The reload task's state.
struct Reloader {
    /// Where the config file is read from.
    source: ConfigSource,
    /// Where a build reads the documents the config names.
    documents: Arc<dyn Source>,
    /// The settings in force since start; a change to them needs a restart.
    started_with: Settings,
    /// The config the snapshot in force was built from.
    config: Arc<Config>,
    /// The config file changed and no build of it has succeeded since: every rebuild parses it
    /// again, so a document change cannot swap in the old config's snapshot and hide the error.
    stale: bool,
    snapshots: Arc<SnapshotHandle>,
    metrics: Metrics,
    pending: Arc<Pending>,
    /// The live watch. What it covers differs from `config.watched` while a new config that
    /// names other files cannot be built yet (it covers both), or after watching failed (tried
    /// again after each successful rebuild and each failed config rebuild).
    watch: Watch,
}

/// One rebuild's result: the config parsed again (if it was), and the snapshot or why not;
/// when the full build failed, the last good snapshot with its identity renewed, if that built.
struct Attempt {
    parsed: Option<Config>,
    built: Result<Snapshot, ConfigError>,
    identity_only: Option<Snapshot>,
}

async fn run(mut reloader: Reloader, mut stop: watch::Receiver<bool>) -> Result<(), String> {
    while let Some(change) = reloader.pending.next_build(&mut stop).await {
        reloader.rebuild(change).await;
    }
    Ok(())
}

impl Reloader {
    /// Builds a new snapshot (parsing the config again first if `change` asks for it, or if
    /// the config changed and has not been built since) and swaps it in, or keeps the current
    /// one and records why.
    async fn rebuild(&mut self, change: Change) {
        let change = if self.stale { Change::Config } else { change };
        let generation = self.snapshots.load().generation + 1;
        let started = Instant::now();
        // This build takes in every live change so far; put back below if it cannot.
        let live = self.pending.live.swap(false, Ordering::AcqRel);
        let attempt = {
            let source = self.source.clone();
            let documents = self.documents.clone();
            let config = self.config.clone();
            let previous = self.snapshots.load();
            tokio::task::spawn_blocking(move || {
                let (parsed, built) = match change {
                    Change::Config => match Config::parse(&source) {
                        Ok(parsed) => {
                            let built = parsed.build(&*documents, generation);
                            (Some(parsed), built)
                        }
                        Err(error) => (None, Err(error)),
                    },
                    Change::Documents => (None, config.build(&*documents, generation)),
                };
                // A failed build keeps the last good policies, but identity sources (a
                // rotated key set, a new bundle, a revocation) must not wait on a policy
                // author's fix: renewed alone when they changed.
                let identity_only = built.is_err().then(|| {
                    rebuild_identity(&config.spec, &*documents, &previous, generation)
                        .ok()
                        .filter(|renewed| live || renewed.version.trust != previous.version.trust)
                });
                Attempt {
                    parsed,
                    built,
                    identity_only: identity_only.flatten(),
                }
            })
            .await
        };
        let (parsed, error) = match attempt {
            Ok(Attempt {
                parsed,
                built: Ok(snapshot),
                ..
            }) => {
                let policies = snapshot.policies.policy_count();
                self.snapshots.store(snapshot);
                let build = started.elapsed();
                self.metrics.reload_succeeded(generation, policies, build);
                tracing::info!(
                    generation,
                    policies,
                    change = change.as_str(),
                    build_ms = build.as_millis() as u64,
                    "configuration reloaded"
                );
                match parsed {
                    Some(parsed) => self.config_in_force(parsed),
                    // A watch that failed before is tried again.
                    None => {
                        self.follow(self.config.watched.clone());
                    }
                }
                return;
            }
            Ok(Attempt {
                parsed,
                built: Err(error),
                identity_only,
            }) => {
                if live && identity_only.is_none() {
                    // Not taken in: the next build must try again.
                    self.pending.live.store(true, Ordering::Release);
                }
                if let Some(snapshot) = identity_only {
                    self.snapshots.store(snapshot);
                    self.metrics
                        .snapshot_loaded(generation, self.snapshots.load().policies.policy_count());
                    tracing::warn!(
                        generation,
                        "identity sources renewed on the last good policies; the failed build below still needs fixing"
                    );
                }
                (parsed, error.to_string())
            }
            Err(join) => {
                if live {
                    self.pending.live.store(true, Ordering::Release);
                }
                (None, format!("the reload task failed: {join}"))
            }
        };
        tracing::error!(error = %error, change = change.as_str(), "reload failed; keeping the last good configuration");
        self.metrics.reload_failed();
        self.snapshots.reload_failed(error);
        if change == Change::Config {
            self.stale = true;
            // What the new config names may be what is missing: watch it too, and look once
            // more in case it arrived before the new watch began.
            let wanted = match &parsed {
                Some(parsed) => self.config.watched.and(&parsed.watched),
                None => self.config.watched.clone(),
            };
            if self.follow(wanted) {
                self.pending.mark(Change::Config);
            }
        }
    }

    /// Keeps `config` for the next document-only builds, and follows what it names.
    fn config_in_force(&mut self, config: Config) {
        if config.settings != self.started_with {
            tracing::warn!(
                "[server], [cache], [audit], [fetch] or identity.workload_api settings changed; they apply after a restart"
            );
        }
        self.stale = false;
        self.follow(config.watched.clone());
        self.config = Arc::new(config);
    }

    /// Watches `wanted` instead of what is watched now, if it differs or the watch waits for a
    /// folder; on failure keeps the old watch. True when the watch now covers something new.
    fn follow(&mut self, wanted: Watched) -> bool {
        if wanted == self.watch.covers && self.watch.missing.is_empty() {
            return false;
        }
        match watch(&wanted, &self.started_with, self.pending.clone()) {
            Ok(watch) => {
                let new = watch.covers != self.watch.covers || watch.missing != self.watch.missing;
                self.watch = watch;
                new
            }
            Err(error) => {
                tracing::error!(%error, "cannot watch what the new configuration names; still watching the old files");
                false
            }
        }
    }
}

impl Change {
    /// The name logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Documents => "documents",
            Self::Config => "config",
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
                pending.mark(Change::Documents);
                tokio::time::sleep(every).await;
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_change_builds_after_the_quiet_time() {
        let pending = Pending::default();
        let (_stop, mut stopped) = watch::channel(false);
        let started = Instant::now();
        pending.mark(Change::Documents);
        assert!(pending.next_build(&mut stopped).await.is_some());
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
            assert!(pending.next_build(&mut stopped).await.is_some());
            // The first change of each round is at most one event interval after the build.
            assert!(started.elapsed() <= n * (MAX_DELAY + Duration::from_millis(50)));
        }
        stream.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_build_is_not_made_to_wait_a_fresh_cap() {
        let pending = Arc::new(Pending::default());
        let (_stop, mut stopped) = watch::channel(false);
        pending.mark(Change::Documents);
        assert!(pending.next_build(&mut stopped).await.is_some());
        // A stream of changes starts while a (slow, 400 ms) build runs.
        let changed = Instant::now();
        let stream = churn(&pending, Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(pending.next_build(&mut stopped).await.is_some());
        assert_eq!(changed.elapsed(), MAX_DELAY);
        stream.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_wait() {
        let pending = Pending::default();
        let (stop, mut stopped) = watch::channel(false);
        pending.mark(Change::Documents);
        stop.send(true).unwrap();
        assert_eq!(pending.next_build(&mut stopped).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn documents_changed_asks_for_a_build_and_a_config_change_for_a_parse() {
        let pending = Arc::new(Pending::default());
        let trigger = ReloadTrigger(pending.clone());
        let (_stop, mut stopped) = watch::channel(false);
        trigger.documents_changed();
        assert_eq!(
            pending.next_build(&mut stopped).await,
            Some(Change::Documents)
        );
        // While pending, the bigger change wins, whichever came first.
        trigger.reload();
        trigger.documents_changed();
        assert_eq!(pending.next_build(&mut stopped).await, Some(Change::Config));
    }

    #[test]
    fn the_config_file_asks_for_a_parse_and_what_it_names_for_a_build() {
        let (dir, source) = crate::config::fixture::demo_config(|c| c);
        let config = Config::parse(&source).unwrap();
        let relevance = Relevance::new(&config.watched, &config.settings);
        let at = |p: &str| absolute(&dir.path().join(p));
        assert_eq!(relevance.change(&at("tollgate.toml")), Some(Change::Config));
        assert_eq!(relevance.change(&at("..data")), Some(Change::Config));
        assert_eq!(
            relevance.change(&at("policies/orders.cedar")),
            Some(Change::Documents)
        );
        let jwks = absolute(
            config
                .watched
                .files
                .iter()
                .find(|f| f.ends_with("issuer.jwks.json"))
                .unwrap(),
        );
        assert_eq!(relevance.change(&jwks), Some(Change::Documents));
        assert_eq!(relevance.change(&at("notes.txt")), None);
        assert_eq!(relevance.change(&at("policies/.orders.cedar.swp")), None);
    }

    /// A reloader over the demo config in a folder of its own, as `start` would make it (no
    /// watch: the test says what changed).
    fn demo_reloader() -> (tempfile::TempDir, Reloader) {
        demo_reloader_with(|c| c)
    }

    /// [`demo_reloader`] on the demo config as `edit` rewrites it.
    fn demo_reloader_with(edit: impl Fn(String) -> String) -> (tempfile::TempDir, Reloader) {
        let (dir, source) = crate::config::fixture::demo_config(edit);
        let (config, snapshot) = crate::config::load(&source, 1).unwrap();
        let reloader = Reloader {
            documents: Arc::new(source.clone()),
            source,
            watch: Watch {
                watcher: None,
                covers: config.watched.clone(),
                missing: BTreeSet::new(),
            },
            stale: false,
            started_with: config.settings.clone(),
            config: Arc::new(config),
            snapshots: Arc::new(SnapshotHandle::new(snapshot)),
            metrics: Metrics,
            pending: Arc::default(),
        };
        (dir, reloader)
    }

    /// Adds a ninth policy (a harmless forbid) to the fixture's policy folder.
    fn add_policy(dir: &Path) {
        std::fs::write(
            dir.join("policies/extra.cedar"),
            "@id(\"extra\")\nforbid (principal == App::\"spiffe://demo.tollgate.dev/gone\", action, resource);\n",
        )
        .unwrap();
    }

    #[tokio::test]
    async fn a_document_change_builds_from_the_config_in_force_without_reading_it() {
        let (dir, mut reloader) = demo_reloader();
        let snapshots = reloader.snapshots.clone();
        let policies = snapshots.load().policies.policy_count();
        // The config and a policy file both change on disk.
        let toml = dir.path().join("tollgate.toml");
        let text = std::fs::read_to_string(&toml).unwrap();
        std::fs::write(
            &toml,
            format!("{text}\n[response]\nprincipal_header = \"x-caller\"\n"),
        )
        .unwrap();
        add_policy(dir.path());

        // Told only of the document: the new policy is in, the config's edit is not.
        reloader.rebuild(Change::Documents).await;
        let built = snapshots.load();
        assert_eq!(built.generation, 2, "{:?}", snapshots.last_reload_error());
        assert_eq!(built.policies.policy_count(), policies + 1);
        assert_eq!(built.response.principal_header, "x-tollgate-principal");

        // Told of the config: parsed again, and kept for the next document build.
        reloader.rebuild(Change::Config).await;
        assert_eq!(snapshots.load().response.principal_header, "x-caller");
        reloader.rebuild(Change::Documents).await;
        let built = snapshots.load();
        assert_eq!(built.generation, 4);
        assert_eq!(built.response.principal_header, "x-caller");
    }

    #[tokio::test]
    async fn a_broken_document_keeps_the_last_good_snapshot_and_says_where() {
        let (dir, mut reloader) = demo_reloader();
        let snapshots = reloader.snapshots.clone();
        std::fs::write(
            dir.path().join("policies/broken.cedar"),
            "permit(principal,, action, resource);\n",
        )
        .unwrap();
        reloader.rebuild(Change::Documents).await;
        assert_eq!(snapshots.load().generation, 1);
        let error = snapshots.last_reload_error().unwrap();
        assert!(error.contains("broken.cedar:1:"), "{error}");
    }

    /// Review finding: a revocation saved while an unrelated policy file was broken waited
    /// for the policy's fix (the identity-only build ran for fetched sources alone).
    #[tokio::test]
    async fn a_broken_policy_does_not_hold_up_a_revocation() {
        let (dir, mut reloader) = demo_reloader();
        let snapshots = reloader.snapshots.clone();
        std::fs::write(
            dir.path().join("policies/broken.cedar"),
            "permit(principal,, action, resource);\n",
        )
        .unwrap();
        reloader.rebuild(Change::Documents).await;
        assert_eq!(snapshots.load().generation, 1, "nothing to renew yet");
        std::fs::write(
            dir.path().join("revoked.toml"),
            "spiffe_ids = [\"spiffe://demo.tollgate.dev/payments\"]\n",
        )
        .unwrap();
        reloader.rebuild(Change::Documents).await;
        let snapshot = snapshots.load();
        assert_eq!(
            snapshot.identity.revocations.len(),
            1,
            "the revocation waited"
        );
        let error = snapshots.last_reload_error().unwrap();
        assert!(error.contains("broken.cedar:1:"), "{error}");
    }

    /// Review finding: a typo in the revocation file failed the identity-only build too, so a
    /// rotated bundle waited for the typo's fix.
    #[tokio::test]
    async fn a_broken_revocation_file_does_not_hold_up_a_bundle_rotation() {
        let manifest = env!("CARGO_MANIFEST_DIR");
        let (dir, mut reloader) = demo_reloader_with(|c| {
            c.replace(&format!("\"{manifest}/deploy/demo/ca.pem\""), "\"ca.pem\"")
        });
        let ca = dir.path().join("ca.pem");
        let snapshots = reloader.snapshots.clone();
        let trust = snapshots.load().version.trust.clone();

        std::fs::write(dir.path().join("revoked.toml"), "spiffe_ids = [\"nope\"]\n").unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let next = params.self_signed(&key).unwrap();
        std::fs::write(&ca, next.pem()).unwrap();
        reloader.rebuild(Change::Documents).await;

        let renewed = snapshots.load();
        assert_ne!(renewed.version.trust, trust, "the rotated bundle waited");
        assert!(
            renewed.identity.revocations.is_empty(),
            "the last good list stays"
        );
        let error = snapshots.last_reload_error().unwrap();
        assert!(error.contains("revoked.toml:1"), "{error}");
    }

    /// Review finding: after a config edit failed to build, a document change built the *old*
    /// config with the new files, went live, and cleared the error from `/readyz`.
    #[tokio::test]
    async fn after_a_config_change_fails_every_rebuild_parses_again_until_one_succeeds() {
        let (dir, mut reloader) = demo_reloader();
        let snapshots = reloader.snapshots.clone();
        let policies = snapshots.load().policies.policy_count();
        let toml = dir.path().join("tollgate.toml");
        let good = std::fs::read_to_string(&toml).unwrap();
        // Parses, but cannot be built: the schema has no such action.
        let bad = format!(
            "{good}\n[[routes]]\nmatch = \"GET /refunds\"\naction = \"refunds:list\"\nresource = 'Service::\"payments\"'\n"
        );
        std::fs::write(&toml, bad).unwrap();
        assert!(Config::parse(&reloader.source).is_ok());
        reloader.rebuild(Change::Config).await;
        assert_eq!(snapshots.load().generation, 1);

        // A policy file changes next: still the broken config, still its error.
        add_policy(dir.path());
        reloader.rebuild(Change::Documents).await;
        assert_eq!(snapshots.load().generation, 1, "the old config went live");
        let error = snapshots.last_reload_error().unwrap();
        assert!(error.contains("refunds:list"), "{error}");

        // One that does not even parse is held the same way.
        std::fs::write(&toml, "[server\n").unwrap();
        reloader.rebuild(Change::Documents).await;
        assert_eq!(snapshots.load().generation, 1);
        let error = snapshots.last_reload_error().unwrap();
        assert!(error.contains("tollgate.toml:1:"), "{error}");

        // The config is mended: any change now builds it, with the policy.
        std::fs::write(&toml, &good).unwrap();
        reloader.rebuild(Change::Documents).await;
        let built = snapshots.load();
        assert_eq!(built.generation, 2, "{:?}", snapshots.last_reload_error());
        assert_eq!(built.policies.policy_count(), policies + 1);
        assert!(snapshots.last_reload_error().is_none());

        // And document changes build from it alone again: a config edit waits for its event.
        std::fs::write(
            &toml,
            format!("{good}\n[response]\nprincipal_header = \"x-caller\"\n"),
        )
        .unwrap();
        reloader.rebuild(Change::Documents).await;
        assert_eq!(snapshots.load().generation, 3);
        assert_eq!(
            snapshots.load().response.principal_header,
            "x-tollgate-principal"
        );
    }

    /// Review finding: a rescan notice (events were lost) was ignored.
    #[test]
    fn lost_events_reload_everything() {
        let (_dir, source) = crate::config::fixture::demo_config(|c| c);
        let config = Config::parse(&source).unwrap();
        let relevance = Relevance::new(&config.watched, &config.settings);
        let rescan =
            notify::Event::new(notify::EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(relevance.of(&Ok(rescan)), Some(Change::Config));
        assert_eq!(
            relevance.of(&Err(notify::Error::generic("queue overflow"))),
            Some(Change::Config)
        );
        let elsewhere = notify::Event::new(notify::EventKind::Any).add_path("/elsewhere".into());
        assert_eq!(relevance.of(&Ok(elsewhere)), None);
    }

    /// Review findings: a new config naming a file that is not there yet failed to build, and
    /// the file's arrival went unseen, because only the old config's files were watched; and
    /// then, because a folder that did not exist could not be watched.
    #[tokio::test]
    async fn a_file_a_failed_config_names_is_watched_until_it_arrives() {
        let (dir, source) = crate::config::fixture::demo_config(|c| c);
        // Not even the folder is there yet.
        let keys = dir.path().join("keys");
        let (config, snapshot) = crate::config::load(&source, 1).unwrap();
        let snapshots = Arc::new(SnapshotHandle::new(snapshot));
        let (_stop, stopped) = watch::channel(false);
        let documents: Arc<dyn Source> = Arc::new(source.clone());
        let (_trigger, _task) = start(
            source,
            documents,
            config,
            snapshots.clone(),
            Metrics,
            stopped,
        )
        .unwrap();

        // The config now names a key set in a folder nothing watched before; it is not there.
        let toml = dir.path().join("tollgate.toml");
        let text = std::fs::read_to_string(&toml).unwrap();
        let moved = dir.path().join("tollgate.toml.new");
        std::fs::write(
            &moved,
            text.replace(
                &format!(
                    "{}/deploy/demo/issuer.jwks.json",
                    env!("CARGO_MANIFEST_DIR")
                ),
                &keys.join("issuer.jwks.json").display().to_string(),
            ),
        )
        .unwrap();
        std::fs::rename(&moved, &toml).unwrap();
        eventually("the missing key set is reported", || {
            snapshots
                .last_reload_error()
                .is_some_and(|e| e.contains("keys/issuer.jwks.json"))
        })
        .await;

        // It arrives, folder first: the config builds.
        std::fs::create_dir(&keys).unwrap();
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/demo/issuer.jwks.json"),
            keys.join("issuer.jwks.json"),
        )
        .unwrap();
        eventually("the key set's arrival is seen", || {
            snapshots.load().generation == 2
        })
        .await;
        assert!(snapshots.last_reload_error().is_none());
    }

    /// Polls `done` every 10 ms for up to 5 s.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
