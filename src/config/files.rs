//! Where config-relative paths are read from: the disk, or the embedded default estate. This
//! is the file [`Source`] every snapshot build reads through.

use std::path::{Component, Path, PathBuf};

use crate::policy::SourceFile;
use crate::snapshot::source::{Document, Folder, Source, SourceError};

/// The embedded default: the demo config, its credentials' public halves, and the example
/// estate, under their repository paths.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "deploy/demo/tollgate.toml",
        include_str!("../../deploy/demo/tollgate.toml"),
    ),
    (
        "deploy/demo/ca.pem",
        include_str!("../../deploy/demo/ca.pem"),
    ),
    (
        "deploy/demo/issuer.jwks.json",
        include_str!("../../deploy/demo/issuer.jwks.json"),
    ),
    (
        "deploy/demo/revoked.toml",
        include_str!("../../deploy/demo/revoked.toml"),
    ),
    (
        "policies/tollgate.cedarschema",
        include_str!("../../policies/tollgate.cedarschema"),
    ),
    (
        "policies/entities.json",
        include_str!("../../policies/entities.json"),
    ),
    (
        "policies/authzen.cedar",
        include_str!("../../policies/authzen.cedar"),
    ),
    (
        "policies/orders.cedar",
        include_str!("../../policies/orders.cedar"),
    ),
    (
        "policies/payments.cedar",
        include_str!("../../policies/payments.cedar"),
    ),
    (
        "policies/platform.cedar",
        include_str!("../../policies/platform.cedar"),
    ),
];

/// The repository path of the embedded config.
pub const EMBEDDED_CONFIG: &str = "deploy/demo/tollgate.toml";

/// Where the config (and the files it names) live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A config file on disk; its relative paths resolve against its folder.
    File(PathBuf),
    /// The embedded default estate.
    Embedded,
}

impl ConfigSource {
    /// The config file's display name.
    pub fn config_name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Embedded => format!("<embedded>/{EMBEDDED_CONFIG}"),
        }
    }

    /// Reads the config file itself.
    pub fn read_config(&self) -> Result<SourceFile, SourceError> {
        match self {
            Self::File(path) => read_disk(path),
            Self::Embedded => read_embedded(Path::new(EMBEDDED_CONFIG)),
        }
    }

    /// Reads a path written in the config (relative to the config's folder).
    pub fn read_relative(&self, relative: &str) -> Result<SourceFile, SourceError> {
        match self {
            Self::File(path) => read_disk(&self.base(path).join(relative)),
            Self::Embedded => read_embedded(&normalize(&embedded_base().join(relative))),
        }
    }

    /// A config-relative path on disk (`None` for the embedded default, which has no folder).
    pub fn resolve(&self, relative: &str) -> Option<PathBuf> {
        match self {
            Self::File(path) => Some(self.base(path).join(relative)),
            Self::Embedded => None,
        }
    }

    /// Reads every `*.cedar` file in a folder and its subfolders, sorted by path. Names
    /// starting with `.` are skipped: editors' temporary files, and Kubernetes ConfigMap
    /// volumes' `..data` and timestamped folders, which hold the same files again.
    pub fn read_cedar_dir(&self, relative: &str) -> Result<Vec<SourceFile>, SourceError> {
        match self {
            Self::File(path) => {
                let dir = self.base(path).join(relative);
                let mut paths = Vec::new();
                collect_cedar_files(&dir, 0, &mut paths)?;
                paths.sort();
                paths.iter().map(|p| read_disk(p)).collect()
            }
            Self::Embedded => {
                let dir = normalize(&embedded_base().join(relative));
                Ok(EMBEDDED
                    .iter()
                    .filter(|(name, _)| {
                        let p = Path::new(name);
                        p.parent() == Some(dir.as_path())
                            && p.extension().is_some_and(|x| x == "cedar")
                    })
                    .map(|(name, text)| SourceFile {
                        name: format!("<embedded>/{name}"),
                        text: (*text).to_owned(),
                    })
                    .collect())
            }
        }
    }

    fn base<'a>(&self, path: &'a Path) -> &'a Path {
        path.parent().unwrap_or(Path::new("."))
    }
}

/// The files a config names, read as its relative paths say.
impl Source for ConfigSource {
    fn read(&self, document: &Document) -> Result<SourceFile, SourceError> {
        match document {
            Document::File(path) => self.read_relative(path),
            Document::Streamed(_) | Document::Endpoint(_) => Err(SourceError {
                name: document.to_string(),
                reason: "only a running server streams or polls it".into(),
            }),
        }
    }

    fn read_policies(&self, Folder(path): &Folder) -> Result<Vec<SourceFile>, SourceError> {
        self.read_cedar_dir(path)
    }
}

/// Deepest subfolder read; also ends a symlink loop.
const MAX_POLICY_DEPTH: usize = 16;

fn collect_cedar_files(
    dir: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
) -> Result<(), SourceError> {
    let read_error = |e: std::io::Error| SourceError {
        name: dir.display().to_string(),
        reason: e.to_string(),
    };
    if depth > MAX_POLICY_DEPTH {
        return Err(read_error(std::io::Error::other(format!(
            "policy folders nest deeper than {MAX_POLICY_DEPTH} levels (a symlink loop?)"
        ))));
    }
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if path.is_dir() {
            collect_cedar_files(&path, depth + 1, out)?;
        } else if path.is_file() && path.extension().is_some_and(|x| x == "cedar") {
            out.push(path);
        }
    }
    Ok(())
}

fn embedded_base() -> PathBuf {
    Path::new(EMBEDDED_CONFIG)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn read_disk(path: &Path) -> Result<SourceFile, SourceError> {
    std::fs::read_to_string(path)
        .map(|text| SourceFile {
            name: path.display().to_string(),
            text,
        })
        .map_err(|e| SourceError {
            name: path.display().to_string(),
            reason: e.to_string(),
        })
}

fn read_embedded(path: &Path) -> Result<SourceFile, SourceError> {
    EMBEDDED
        .iter()
        .find(|(name, _)| Path::new(name) == path)
        .map(|(name, text)| SourceFile {
            name: format!("<embedded>/{name}"),
            text: (*text).to_owned(),
        })
        .ok_or_else(|| SourceError {
            name: format!("<embedded>/{}", path.display()),
            reason: "not part of the embedded default".into(),
        })
}

/// Lexical `.`/`..` resolution for embedded paths.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_paths_resolve_like_disk_paths() {
        let source = ConfigSource::Embedded;
        assert!(
            source
                .read_relative("ca.pem")
                .unwrap()
                .text
                .contains("BEGIN CERTIFICATE")
        );
        assert!(source.read_relative("../../policies/entities.json").is_ok());
        let cedar = source.read_cedar_dir("../../policies").unwrap();
        assert_eq!(cedar.len(), 4);
        assert!(source.read_relative("missing.pem").is_err());
    }
}
