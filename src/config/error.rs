//! `ConfigError`: every problem names the file, the line and column where known, and the key.

use crate::snapshot::build::BuildError;
use crate::snapshot::source::SourceError;
use crate::snapshot::spec::Location;

/// Why a configuration could not be loaded: parsed, or built into a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file (or the listener's TLS material) could not be read.
    #[error(transparent)]
    Read(#[from] SourceError),
    /// The TOML does not parse or has an unknown or mistyped key.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// Config file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// toml's message (names the key).
        message: String,
    },
    /// A value is not acceptable on its own.
    #[error("{at}: {message}")]
    Invalid {
        /// Where the value is written.
        at: Location,
        /// What is wrong and what to do.
        message: String,
    },
    /// The config parsed, but a snapshot could not be built from it and its documents.
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl ConfigError {
    /// The config value at fault, whichever step found it (none for unreadable files, syntax
    /// and policy errors, which carry their own file and line).
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Invalid { at, .. } | Self::Build(BuildError::Invalid { at, .. }) => Some(at),
            Self::Read(_)
            | Self::Syntax { .. }
            | Self::Build(BuildError::Read(_) | BuildError::Policies(_)) => None,
        }
    }
}
