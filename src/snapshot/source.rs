//! The seam between what a snapshot is built *from* and how it is built: the builder asks a
//! [`Source`] for [`Document`]s by name and never touches the disk itself. Files on disk and
//! the embedded demo estate are one source (`config::ConfigSource`); documents fetched or
//! streamed at run time (a JWKS endpoint, the SPIFFE Workload API, a token status list) are
//! to be further [`Document`] kinds served by further sources, feeding the same builder and
//! the same atomic swap (`reload::ReloadTrigger::documents_changed` asks for the build).

use std::sync::Arc;

use super::spec::{BundleEndpointSpec, RemoteJwksSpec};
use crate::identity::bundle::RemoteBundle;
use crate::identity::jwks::RemoteKeys;
use crate::policy::SourceFile;

/// One input of a snapshot, named as the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Document {
    /// A file, by the path written in the config (relative to the config's folder).
    File(String),
    /// A document the SPIFFE Workload API streams.
    Streamed(Streamed),
    /// A trust domain's bundle as polled from its bundle endpoint, by the domain's name.
    Endpoint(String),
}

/// What the SPIFFE Workload API streams, per trust domain. An absent one is an empty set
/// (the API dropped the domain, or has not answered yet), never a failed build.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Streamed {
    /// The X.509 authorities of a trust domain (its own or a federated one), as PEM.
    X509Bundle(String),
    /// The JWT authorities of a trust domain, as a JWKS.
    JwtBundle(String),
}

impl std::fmt::Display for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::X509Bundle(td) => write!(f, "the Workload API's X.509 bundle for `{td}`"),
            Self::JwtBundle(td) => write!(f, "the Workload API's JWT bundle for `{td}`"),
        }
    }
}

/// A folder of `.cedar` policy files, by the path written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Folder(pub String);

impl std::fmt::Display for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.write_str(path),
            Self::Streamed(streamed) => streamed.fmt(f),
            Self::Endpoint(td) => write!(f, "the bundle endpoint's bundle for `{td}`"),
        }
    }
}

/// Where documents are read from. A build reads each document once, off the request path, and
/// every build reads all of them, so a source of fetched documents serves the last good copy
/// it has (a failed fetch must not stop an unrelated policy edit from building) and says
/// `SourceError` only for a document it has never had.
pub trait Source: Send + Sync {
    /// The current text of one document.
    fn read(&self, document: &Document) -> Result<SourceFile, SourceError>;

    /// Every `.cedar` file under a folder, in a stable order (sorted by path).
    fn read_policies(&self, folder: &Folder) -> Result<Vec<SourceFile>, SourceError>;

    /// The live key set of an issuer whose keys are fetched at run time. A source that does
    /// not fetch (files alone, as `validate` and `test` use) has none, and the issuer then
    /// refuses every token `token_keys_unavailable`.
    fn remote_keys(&self, spec: &RemoteJwksSpec) -> Option<Arc<RemoteKeys>> {
        let _ = spec;
        None
    }

    /// When a live document (streamed, or polled from an endpoint) last changed: of two live
    /// bundles that share a CA, the newer brought it in. `None` for files, or when unknown.
    fn live_since(&self, document: &Document) -> Option<std::time::Instant> {
        let _ = document;
        None
    }

    /// The live bundle of a trust domain polled from its bundle endpoint. A source that does
    /// not fetch has none, and the domain then has no authority.
    fn remote_bundle(&self, spec: &BundleEndpointSpec) -> Option<Arc<RemoteBundle>> {
        let _ = spec;
        None
    }
}

/// A document that could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: cannot read: {reason}")]
pub struct SourceError {
    /// The document as the user knows it (a path, `<embedded>/…`).
    pub name: String,
    /// Why not (the OS error, or what is missing).
    pub reason: String,
}
