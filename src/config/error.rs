//! `ConfigError`: every problem names the file, the line and column where known, and the key.

use crate::policy::PolicyError;
use crate::snapshot::build::BuildError;
use crate::snapshot::source::SourceError;
use crate::snapshot::spec::Location;

/// Why a configuration could not be loaded: parsed, or built into its first snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
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
    /// A value is not acceptable, on its own or given the document it names.
    #[error("{at}: {message}")]
    Invalid {
        /// Where the value is written.
        at: Location,
        /// What is wrong and what to do.
        message: String,
    },
    /// The schema, policies or entities have errors (all are listed).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Policies(Vec<PolicyError>),
}

/// A build error is reported like the parse errors, so `validate` and a reload's log read the
/// same whichever step found the problem.
impl From<BuildError> for ConfigError {
    fn from(error: BuildError) -> Self {
        match error {
            BuildError::Read(e) => Self::Read(e),
            BuildError::Invalid { at, message } => Self::Invalid { at, message },
            BuildError::Policies(errors) => Self::Policies(errors),
        }
    }
}
