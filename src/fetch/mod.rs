//! Documents fetched at run time, as a snapshot [`Source`]: the config's files plus, for each
//! issuer whose keys come from a JWKS URL or OIDC discovery, a live key set that a background
//! task keeps fresh ([`jwks`]). Builds read the last good set and never wait on the network;
//! a changed set asks for a build through the callback [`Fetcher::on_change`] installs.

mod federation;
pub mod http;
mod jwks;
mod status_list;
pub mod workload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::config::{FetchSettings, WorkloadApiSettings};
use crate::identity::bundle::RemoteBundle;
use crate::identity::jwks::RemoteKeys;
use crate::identity::status_list::{StatusListSpec, StatusLists};
use crate::policy::SourceFile;
use crate::snapshot::source::{Document, Folder, Source, SourceError};
use crate::snapshot::spec::{BundleEndpointSpec, RemoteJwksSpec};
use workload::Streams;

pub use http::{FetchError, HttpClient};

/// The config's files, and the key sets fetched for issuers that name a URL.
pub struct Fetcher {
    files: Arc<dyn Source>,
    client: HttpClient,
    live: Mutex<HashMap<RemoteJwksSpec, Weak<RemoteKeys>>>,
    bundles: Mutex<HashMap<BundleEndpointSpec, Weak<RemoteBundle>>>,
    status_lists: Mutex<HashMap<StatusListSpec, Weak<StatusLists>>>,
    changed: Arc<Changed>,
    /// What the SPIFFE Workload API streamed, once [`Fetcher::follow_workload_api`] started.
    streams: Arc<Streams>,
}

/// Who to tell that a fetched document changed; remembered until someone listens, so a fetch
/// that lands before the reloader starts is not lost.
#[derive(Default)]
struct Changed {
    state: Mutex<Listening>,
}

type Listener = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Listening {
    listener: Option<Listener>,
    /// A change fired before anyone listened.
    missed: bool,
}

impl Changed {
    fn fire(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &state.listener {
            Some(listener) => listener(),
            None => state.missed = true,
        }
    }

    fn listen(&self, listener: Listener) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut state.missed) {
            listener();
        }
        state.listener = Some(listener);
    }
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// Files from `files`; fetches with a client as `settings` describe it.
    pub fn new(files: Arc<dyn Source>, settings: &FetchSettings) -> Result<Self, String> {
        Ok(Self {
            files,
            client: HttpClient::new(settings)?,
            live: Mutex::default(),
            bundles: Mutex::default(),
            status_lists: Mutex::default(),
            changed: Arc::default(),
            streams: Arc::default(),
        })
    }

    /// Starts following the SPIFFE Workload API (inside a Tokio runtime).
    pub fn follow_workload_api(&self, settings: &WorkloadApiSettings) {
        let changed = self.changed.clone();
        workload::start(
            self.streams.clone(),
            settings,
            Arc::new(move || changed.fire()),
        );
    }

    /// What the Workload API has streamed (bundles, Tollgate's own SVID).
    pub fn streams(&self) -> Arc<Streams> {
        self.streams.clone()
    }

    /// Calls `listener` (now, if a change is already waiting) whenever a fetched document
    /// changes.
    pub fn on_change(&self, listener: impl Fn() + Send + Sync + 'static) {
        self.changed.listen(Box::new(listener));
    }
}

impl Fetcher {
    /// The live value for `key` in `followed`, or a new one from `make` (shown the map, to
    /// carry state over) with a task from `follow` keeping it fresh. The map holds weak
    /// references: a value no snapshot holds any more ends its task, and is made afresh when
    /// a build asks again. `None` outside a Tokio runtime (nothing could follow it).
    fn followed<K, V, F>(
        &self,
        followed: &Mutex<HashMap<K, Weak<V>>>,
        key: &K,
        make: impl FnOnce(&HashMap<K, Weak<V>>) -> V,
        follow: impl FnOnce(Arc<V>, Arc<dyn Fn() + Send + Sync>) -> F,
    ) -> Option<Arc<V>>
    where
        K: std::hash::Hash + Eq + Clone,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut map = followed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = map.get(key).and_then(Weak::upgrade) {
            return Some(value);
        }
        map.retain(|_, value| value.strong_count() > 0);
        let value = Arc::new(make(&map));
        map.insert(key.clone(), Arc::downgrade(&value));
        let changed = self.changed.clone();
        runtime.spawn(follow(value.clone(), Arc::new(move || changed.fire())));
        Some(value)
    }
}

impl Source for Fetcher {
    fn read(&self, document: &Document) -> Result<SourceFile, SourceError> {
        match document {
            Document::Streamed(streamed) => match self.streams.read(streamed) {
                Some(text) => Ok(SourceFile {
                    name: streamed.to_string(),
                    text,
                }),
                None => Err(SourceError {
                    name: streamed.to_string(),
                    reason: "the Workload API has not sent it".into(),
                }),
            },
            Document::File(_) | Document::Endpoint(_) => self.files.read(document),
        }
    }

    fn read_policies(&self, folder: &Folder) -> Result<Vec<SourceFile>, SourceError> {
        self.files.read_policies(folder)
    }

    /// The live key set for `spec`, started (with a task following it) the first time a build
    /// asks. A spec that changed (say, a new URL) starts afresh but keeps, until its first
    /// fetch, what the issuer's previous spec had, so a reload does not empty the key set.
    fn remote_keys(&self, spec: &RemoteJwksSpec) -> Option<Arc<RemoteKeys>> {
        let client = self.client.clone();
        self.followed(
            &self.live,
            spec,
            |live| {
                let keys = RemoteKeys::new(
                    spec.describe(),
                    i64::try_from(spec.max_age_seconds).unwrap_or(i64::MAX),
                    spec.optional,
                );
                if let Some(previous) = live
                    .iter()
                    .find(|(other, _)| other.issuer == spec.issuer)
                    .and_then(|(_, keys)| keys.upgrade())
                    && let Some(set) = previous.current()
                {
                    keys.confirm(previous.confirmed_at(), Some(set));
                }
                keys
            },
            |keys, changed| jwks::follow(keys, spec.clone(), client, changed),
        )
    }

    fn live_since(&self, document: &Document) -> Option<std::time::Instant> {
        match document {
            Document::Streamed(streamed) => self.streams.since(streamed),
            Document::Endpoint(td) => self
                .bundles
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter(|(spec, _)| spec.trust_domain == *td)
                .find_map(|(_, bundle)| bundle.upgrade())
                .and_then(|bundle| bundle.taken_at()),
            Document::File(_) => None,
        }
    }

    /// The live status lists of `spec`'s issuer, started (with their follower) the first time
    /// a build asks. A changed spec starts afresh: its lists are fetched again.
    fn status_lists(&self, spec: &StatusListSpec) -> Option<Arc<StatusLists>> {
        let client = self.client.clone();
        self.followed(
            &self.status_lists,
            spec,
            |live| {
                let previous = live
                    .iter()
                    .find(|(other, _)| other.issuer == spec.issuer)
                    .and_then(|(_, lists)| lists.upgrade());
                StatusLists::new_after(spec.clone(), previous.as_deref())
            },
            |lists, _changed| status_list::follow(lists, client),
        )
    }

    /// The live bundle polled from `spec`'s endpoint, started (with its poller) the first
    /// time a build asks.
    fn remote_bundle(&self, spec: &BundleEndpointSpec) -> Option<Arc<RemoteBundle>> {
        let client = self.client.clone();
        self.followed(
            &self.bundles,
            spec,
            |_| RemoteBundle::new(spec.url.clone()),
            |bundle, changed| federation::follow(bundle, spec.clone(), client, changed),
        )
    }
}
