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
use crate::identity::status_list::{StatusListSpec, StatusLists};
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

    /// The live status lists of an issuer whose tokens may name some. A source that does not
    /// fetch has none, and tokens naming a list are refused `token_status_unavailable`.
    fn status_lists(&self, spec: &StatusListSpec) -> Option<Arc<StatusLists>> {
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

/// A [`Source`] that digests everything a build reads through it, so a snapshot can name the
/// exact inputs it was built from (its version in every audit record). The digest covers each
/// document's name and text in the order read, a fetched key set's key ids, and a polled
/// bundle's text.
pub struct Digesting<'a> {
    inner: &'a dyn Source,
    secrets: Vec<Document>,
    context: std::sync::Mutex<aws_lc_rs::digest::Context>,
}

impl<'a> Digesting<'a> {
    /// Digests what is read from `inner`.
    pub fn new(inner: &'a dyn Source) -> Self {
        Self {
            inner,
            secrets: Vec::new(),
            context: std::sync::Mutex::new(aws_lc_rs::digest::Context::new(
                &aws_lc_rs::digest::SHA256,
            )),
        }
    }

    /// Documents that are secrets: named in the digest, their text never digested.
    pub fn with_secrets(mut self, secrets: &[Document]) -> Self {
        self.secrets = secrets.to_vec();
        self
    }

    fn feed(&self, parts: &[&[u8]]) {
        // A poisoned lock only means another reader panicked mid-build; the build fails anyway.
        if let Ok(mut context) = self.context.lock() {
            for part in parts {
                context.update(&(part.len() as u64).to_be_bytes());
                context.update(part);
            }
        }
    }

    /// The first 12 hex digits of the digest: short enough to read in a record, long enough
    /// that two estates never share one by accident.
    pub fn finish(self) -> String {
        let digest = match self.context.into_inner() {
            Ok(context) => context.finish(),
            Err(poisoned) => poisoned.into_inner().finish(),
        };
        hex::encode(digest.as_ref().get(..6).unwrap_or_default())
    }
}

impl Source for Digesting<'_> {
    fn read(&self, document: &Document) -> Result<SourceFile, SourceError> {
        let file = self.inner.read(document)?;
        if self.secrets.contains(document) {
            self.feed(&[file.name.as_bytes()]);
        } else {
            self.feed(&[file.name.as_bytes(), file.text.as_bytes()]);
        }
        Ok(file)
    }

    fn read_policies(&self, folder: &Folder) -> Result<Vec<SourceFile>, SourceError> {
        let files = self.inner.read_policies(folder)?;
        for file in &files {
            self.feed(&[file.name.as_bytes(), file.text.as_bytes()]);
        }
        Ok(files)
    }

    fn remote_keys(&self, spec: &RemoteJwksSpec) -> Option<Arc<RemoteKeys>> {
        let keys = self.inner.remote_keys(spec)?;
        let kids = keys
            .current()
            .map(|set| set.kids().join(" "))
            .unwrap_or_default();
        self.feed(&[spec.issuer.as_bytes(), kids.as_bytes()]);
        Some(keys)
    }

    fn live_since(&self, document: &Document) -> Option<std::time::Instant> {
        self.inner.live_since(document)
    }

    fn status_lists(&self, spec: &StatusListSpec) -> Option<Arc<StatusLists>> {
        self.inner.status_lists(spec)
    }

    fn remote_bundle(&self, spec: &BundleEndpointSpec) -> Option<Arc<RemoteBundle>> {
        let bundle = self.inner.remote_bundle(spec)?;
        self.feed(&[
            spec.url.as_bytes(),
            bundle.text().unwrap_or_default().as_bytes(),
        ]);
        Some(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files(Vec<(&'static str, &'static str)>);

    impl Source for Files {
        fn read(&self, document: &Document) -> Result<SourceFile, SourceError> {
            let Document::File(name) = document else {
                return Err(SourceError {
                    name: format!("{document:?}"),
                    reason: "not a file".into(),
                });
            };
            self.0
                .iter()
                .find(|(n, _)| n == name)
                .map(|(n, t)| SourceFile {
                    name: (*n).into(),
                    text: (*t).into(),
                })
                .ok_or_else(|| SourceError {
                    name: name.clone(),
                    reason: "missing".into(),
                })
        }

        fn read_policies(&self, _: &Folder) -> Result<Vec<SourceFile>, SourceError> {
            Ok(Vec::new())
        }
    }

    /// Review finding: an issuer's HMAC secret went into the digest every record carries, a
    /// guessing oracle for whoever reads the records.
    #[test]
    fn secrets_are_named_in_the_digest_never_digested() {
        let digest = |secret: &'static str| {
            let files = Files(vec![("bundle.pem", "CA"), ("hmac.key", secret)]);
            let secret = Document::File("hmac.key".into());
            let read = Digesting::new(&files).with_secrets(std::slice::from_ref(&secret));
            read.read(&Document::File("bundle.pem".into())).unwrap();
            read.read(&secret).unwrap();
            read.finish()
        };
        assert_eq!(digest("hunter2"), digest("correct horse battery staple"));
        let files = Files(vec![("bundle.pem", "CA")]);
        let other = Digesting::new(&files);
        other.read(&Document::File("bundle.pem".into())).unwrap();
        assert_ne!(other.finish(), digest("hunter2"));
    }
}
