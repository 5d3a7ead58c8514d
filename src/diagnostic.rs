//! One shape for every problem `validate` reports (config errors, Cedar errors, lints), printed
//! as `file:line:col: severity: message` or as JSON for editors and CI.

use std::fmt;

use serde::Serialize;

use crate::config::ConfigError;
use crate::policy::PolicyError;
use crate::snapshot::build::BuildError;
use crate::snapshot::source::SourceError;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `serve` would refuse to start (or to reload).
    Error,
    /// Legal, but almost certainly not what the author meant.
    Warning,
}

/// A located problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable kebab-case name, e.g. `syntax`, `policy-never-applies`.
    pub kind: &'static str,
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    /// Every diagnostic in a config load failure (a policy failure carries several).
    pub fn from_config_error(error: &ConfigError) -> Vec<Self> {
        let error_at = |kind, file: &str, line, column, message: String| Self {
            severity: Severity::Error,
            kind,
            file: file.to_owned(),
            line,
            column,
            message,
            help: None,
        };
        match error {
            ConfigError::Read(SourceError { name, reason })
            | ConfigError::Build(BuildError::Read(SourceError { name, reason })) => {
                vec![error_at(
                    "read",
                    name,
                    1,
                    1,
                    format!("cannot read: {reason}"),
                )]
            }
            ConfigError::Syntax {
                file,
                line,
                column,
                message,
            } => {
                vec![error_at(
                    "config-syntax",
                    file,
                    *line,
                    *column,
                    message.clone(),
                )]
            }
            ConfigError::Invalid { at, message }
            | ConfigError::Build(BuildError::Invalid { at, message }) => {
                vec![error_at(
                    "config-invalid",
                    &at.file,
                    at.line,
                    at.column,
                    format!("`{}`: {message}", at.key),
                )]
            }
            ConfigError::Build(BuildError::Policies(errors)) => {
                errors.iter().map(Self::from).collect()
            }
        }
    }
}

impl From<&PolicyError> for Diagnostic {
    fn from(error: &PolicyError) -> Self {
        use crate::policy::PolicyErrorKind as K;
        Self {
            severity: Severity::Error,
            kind: match error.kind {
                K::Schema => "schema",
                K::Syntax => "syntax",
                K::Validation => "validation",
                K::Entities => "entities",
                K::DuplicateId => "duplicate-policy-id",
            },
            file: error.file.clone(),
            line: error.line,
            column: error.column,
            message: error.message.clone(),
            help: error.help.clone(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}[{}]: {}",
            self.file, self.line, self.column, self.kind, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}
