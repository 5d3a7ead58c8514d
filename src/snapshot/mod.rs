//! `Snapshot`: everything a decision depends on that can change at run time, immutable and
//! swapped whole, so no request ever sees half an old world. [`build::build`] makes one from a
//! [`spec::Spec`] (what the configuration describes) and a [`source::Source`] (where the
//! documents come from).

pub mod build;
pub mod source;
pub mod spec;

use std::sync::Arc;

use crate::mapping::authzen::AuthZenMapping;
use arc_swap::{ArcSwap, ArcSwapOption};

use crate::identity::Identity;
use crate::mapping::routes::Routes;
use crate::policy::PolicyStore;

/// One consistent view of identity trust, routes, policies and response shaping.
#[derive(Debug)]
pub struct Snapshot {
    /// Bumped on every swap; tags cache entries.
    pub generation: u64,
    /// Trust bundles, trust domains, issuers.
    pub identity: Identity,
    /// The route table.
    pub routes: Routes,
    /// Schema, policies, entities (shared, so a build that only renews identity can keep them).
    pub policies: Arc<PolicyStore>,
    /// Header names and body options.
    pub response: Arc<ResponseSettings>,
    /// The AuthZEN API's mapping, checked against this snapshot's schema; `None`: the API is off.
    pub authzen: Option<Arc<AuthZenMapping>>,
    /// Streamed documents this snapshot was built without, not having arrived yet (e.g. a
    /// trust domain's bundle from the Workload API): `/readyz` waits for them.
    pub awaiting: Vec<String>,
    /// Bundles polled from federated trust domains' endpoints; holding them keeps their
    /// pollers running.
    pub remote_bundles: Vec<Arc<crate::identity::bundle::RemoteBundle>>,
    /// Digests of the documents it was built from, named in every audit record.
    pub version: Arc<SnapshotVersion>,
}

/// What a snapshot was built from, as two digests: its policies (schema, policy files,
/// entities) and its trust material (bundles, key sets, issuer keys). A decision's record names
/// both, so it can be traced to the exact policy text that made it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotVersion {
    /// Digest of the schema, the policy files and the entities, in the order read.
    pub policies: String,
    /// Digest of the trust material: trust bundles, intermediates, issuer key sets.
    pub trust: String,
}

impl std::fmt::Display for SnapshotVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p:{} t:{}", self.policies, self.trust)
    }
}

/// `response.principal_header` unless the config names another.
pub const DEFAULT_PRINCIPAL_HEADER: &str = "x-tollgate-principal";
/// `response.decision_id_header` unless the config names another.
pub const DEFAULT_DECISION_ID_HEADER: &str = "x-tollgate-decision-id";

/// How responses are shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSettings {
    /// Header carrying the principal upstream (lower-case).
    pub principal_header: String,
    /// Header carrying the decision id upstream (lower-case).
    pub decision_id_header: String,
    /// Remove `authorization` before the request goes upstream.
    pub strip_authorization: bool,
    /// Include determining policy ids in 403 bodies.
    pub expose_policy_ids: bool,
    /// Status for internal errors.
    pub internal_error_status: u16,
}

/// The snapshot one request is decided against; see [`SnapshotHandle::for_request`].
pub type SnapshotGuard = arc_swap::Guard<Arc<Snapshot>>;

/// The current snapshot, swappable without locks on the read side, plus why the last reload
/// failed (if it did) for `/readyz`.
#[derive(Debug)]
pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
    last_reload_error: ArcSwapOption<String>,
}

impl SnapshotHandle {
    /// Starts with `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        snapshot.identity.issuers.activate();
        Self {
            current: ArcSwap::from_pointee(snapshot),
            last_reload_error: ArcSwapOption::empty(),
        }
    }

    /// Records a failed reload; the current snapshot stays in force.
    pub fn reload_failed(&self, error: String) {
        self.last_reload_error.store(Some(Arc::new(error)));
    }

    /// Why the most recent reload failed, if the most recent one did.
    pub fn last_reload_error(&self) -> Option<Arc<String>> {
        self.last_reload_error.load_full()
    }

    /// The snapshot in force, to keep.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The snapshot to use for one whole request. A guard, not an `Arc` clone: cloning would
    /// write the one reference count every worker shares on every request, while the guard
    /// costs a thread-local slot. Hold it for a request, not longer.
    pub fn for_request(&self) -> SnapshotGuard {
        self.current.load()
    }

    /// Replaces the snapshot (and clears any reload error).
    pub fn store(&self, snapshot: Snapshot) {
        snapshot.identity.issuers.activate();
        self.current.store(Arc::new(snapshot));
        self.last_reload_error.store(None);
    }
}
