//! `ConfigError`: every problem names the file, the line and column where known, and the key.

use crate::policy::PolicyError;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{path}: cannot read: {reason}")]
    Read {
        /// The path.
        path: String,
        /// The OS error.
        reason: String,
    },
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
    /// A value is not acceptable.
    #[error("{file}:{line}:{column}: `{key}`: {message}")]
    Invalid {
        /// Config file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted key path, e.g. `issuers[0].algorithms`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The schema, policies or entities have errors (all are listed).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Policies(Vec<PolicyError>),
}
