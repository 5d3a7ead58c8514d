//! Policy test files (`policies/tests/*.yaml|json`): cases that give a request and the expected
//! decision, run through the same mapping and Cedar stages as `serve`.
//!
//! A case names its caller by facts (SPIFFE ID, token claims) instead of real credentials:
//! policy tests are about policies and routes, and certificate and token verification are
//! tested where they live. A case may instead give a raw Cedar request.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::authz::Authorizer;
use crate::identity::cert::WorkloadName;
use crate::identity::spiffe::SpiffeId;
use crate::identity::spiffe::SpiffeIdError;
use crate::identity::token::VerifiedToken;
use crate::identity::{AccessMode, Caller, Workload};
use crate::policy::{DecideError, decide_raw};
use crate::request::CheckInput;

/// Why test files could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    /// A file or folder could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A path names nothing.
    #[error("{path}: no such file or folder")]
    Missing {
        /// The path as given.
        path: String,
    },
    /// The YAML or JSON does not parse as a test file.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message (names the line and the field).
        message: String,
    },
}

/// Why a case cannot be run: the case is malformed, not the policies.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// Neither or both of the two ways to give a request.
    #[error("give either `caller` and `request`, or `cedar`")]
    Shape,
    /// The caller has no principal.
    #[error("caller needs `spiffe_id` or `token.client_id`")]
    NoPrincipal,
    /// The caller's SPIFFE ID is not a workload ID.
    #[error("spiffe_id `{id}`: {source}")]
    SpiffeId {
        /// As written.
        id: String,
        /// What is wrong with it.
        source: SpiffeIdError,
    },
    /// The raw Cedar request does not evaluate.
    #[error(transparent)]
    Cedar(#[from] DecideError),
}

/// One test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Config to test against, relative to this file; default: the command line's.
    #[serde(default)]
    pub config: Option<String>,
    /// The cases, run in order.
    pub cases: Vec<TestCase>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Shown in the output.
    pub name: String,
    /// Who calls (with `request`).
    #[serde(default)]
    pub caller: Option<CallerSpec>,
    /// The HTTP request (with `caller`).
    #[serde(default)]
    pub request: Option<RequestSpec>,
    /// A raw Cedar request (instead of `caller` + `request`).
    #[serde(default)]
    pub cedar: Option<CedarSpec>,
    /// What must happen.
    pub expect: Expect,
}

/// The caller, as facts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerSpec {
    /// The workload's SPIFFE ID (its certificate).
    #[serde(default)]
    pub spiffe_id: Option<String>,
    /// The verified token's facts.
    #[serde(default)]
    pub token: Option<TokenSpec>,
}

/// Facts from a verified token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// `iss`.
    #[serde(default)]
    pub issuer: String,
    /// The client (`client_id`/`azp`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The user a delegated token acts for (`sub`); absent for app-only.
    #[serde(default)]
    pub user: Option<String>,
    /// `act.sub`.
    #[serde(default)]
    pub actor: Option<String>,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Bound to the caller's certificate (RFC 8705).
    #[serde(default)]
    pub bound: bool,
}

/// The HTTP request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Method.
    pub method: String,
    /// Path (and query).
    pub path: String,
    /// Host.
    #[serde(default)]
    pub host: String,
    /// Source address.
    #[serde(default)]
    pub source_ip: Option<IpAddr>,
}

/// A raw Cedar request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CedarSpec {
    /// e.g. `App::"spiffe://example.org/web"`.
    pub principal: String,
    /// e.g. `Action::"orders:read"`.
    pub action: String,
    /// e.g. `Order::"1"`.
    pub resource: String,
    /// The context record (must match the schema).
    #[serde(default = "empty_record")]
    pub context: serde_json::Value,
}

fn empty_record() -> serde_json::Value {
    serde_json::json!({})
}

/// The expected outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow` or `deny`.
    pub decision: ExpectedDecision,
    /// Exactly these determining policy ids (any order), when given.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    /// This reason code (`allowed` for allows), when given.
    #[serde(default)]
    pub reason: Option<String>,
}

/// As a failure message shows it, in the same words as the actual outcome:
/// `deny (reason policy_denied, policies [a, b])`, naming only what the case pins down.
impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.decision {
            ExpectedDecision::Allow => "allow",
            ExpectedDecision::Deny => "deny",
        })?;
        let mut details = Vec::new();
        if let Some(reason) = &self.reason {
            details.push(format!("reason {reason}"));
        }
        if let Some(policies) = &self.policies {
            details.push(format!("policies [{}]", policies.join(", ")));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedDecision {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// What a case produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    /// Matches the expectation.
    pub passed: bool,
    /// What happened, for failure messages.
    pub actual: String,
    /// Determining policies (for coverage).
    pub determining: Vec<String>,
}

/// Reads a test file (YAML, or JSON by extension).
pub fn read(path: &Path) -> Result<TestFile, TestFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_norway::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|message| TestFileError::Syntax {
        path: path.display().to_string(),
        message,
    })
}

/// Test files under `paths` (files as given, folders' `*.yaml|*.yml|*.json`), sorted.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, TestFileError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| TestFileError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            found.sort();
            files.extend(found);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(TestFileError::Missing {
                path: path.display().to_string(),
            });
        }
    }
    Ok(files)
}

/// Runs one case with `authorizer` (the pipeline `serve` uses); `Err` when the case itself is
/// malformed.
pub fn run_case(authorizer: &Authorizer, case: &TestCase) -> Result<CaseOutcome, CaseError> {
    let snapshot = authorizer.snapshot();
    let (allowed, reason, determining) = match (&case.cedar, &case.caller, &case.request) {
        (Some(cedar), None, None) => {
            let decision = decide_raw(
                &snapshot.policies,
                &cedar.principal,
                &cedar.action,
                &cedar.resource,
                &cedar.context,
            )?;
            let reason = if decision.allowed {
                "allowed"
            } else {
                "policy_denied"
            };
            (
                decision.allowed,
                reason.to_owned(),
                decision.determining.to_vec(),
            )
        }
        (None, Some(caller), Some(request)) => {
            let caller = caller_from(caller)?;
            let input = CheckInput {
                method: request.method.clone(),
                path: request.path.clone(),
                host: request.host.clone(),
                source_ip: request.source_ip,
                ..CheckInput::default()
            };
            let verdict =
                authorizer.decide_as(&snapshot, caller, &input, crate::clock::wall(), None);
            let reason = verdict
                .reason()
                .map_or("allowed", |r| r.as_str())
                .to_owned();
            (verdict.is_allowed(), reason, verdict.determining.to_vec())
        }
        _ => return Err(CaseError::Shape),
    };
    let expect = &case.expect;
    let mut passed = allowed == (expect.decision == ExpectedDecision::Allow);
    if let Some(policies) = &expect.policies {
        let mut want = policies.clone();
        want.sort_unstable();
        passed &= want == determining;
    }
    if let Some(want) = &expect.reason {
        passed &= *want == reason;
    }
    Ok(CaseOutcome {
        passed,
        actual: format!(
            "{} (reason {reason}, policies [{}])",
            if allowed { "allow" } else { "deny" },
            determining.join(", ")
        ),
        determining,
    })
}

fn caller_from(spec: &CallerSpec) -> Result<Caller, CaseError> {
    let workload = match &spec.spiffe_id {
        Some(id) => Some(Workload {
            name: WorkloadName::Spiffe(SpiffeId::parse_workload(id).map_err(|source| {
                CaseError::SpiffeId {
                    id: id.clone(),
                    source,
                }
            })?),
            thumbprint: None,
            serial: None,
            issuer: None,
            not_after: None,
            not_before: None,
        }),
        None => None,
    };
    let token = spec.token.as_ref().map(|t| {
        let mut scopes = t.scopes.clone();
        scopes.sort_unstable();
        scopes.dedup();
        Arc::new(VerifiedToken {
            issuer: t.issuer.clone(),
            subject: t.user.clone().or_else(|| t.client_id.clone()),
            client_principal: t.client_id.as_ref().map(|c| format!("{}#{c}", t.issuer)),
            client_id: t.client_id.clone(),
            scopes,
            user: t.user.clone(),
            actor: t.actor.clone(),
            bound_thumbprint: None,
            require_binding: false,
            valid_until: i64::MAX,
            svid: None,
            expires_at: i64::MAX,
            jti: None,
            issued_at: None,
            status: None,
        })
    });
    // As `serve` names them: a token-only caller is `<issuer>#<client>`.
    let principal = match (
        &spec.spiffe_id,
        token.as_ref().and_then(|t| t.client_principal.clone()),
    ) {
        (Some(id), _) => id.clone(),
        (None, Some(client)) => client,
        (None, None) => return Err(CaseError::NoPrincipal),
    };
    let mode = AccessMode::for_token(token.as_deref());
    Ok(Caller {
        principal,
        workload,
        bound: spec.token.as_ref().is_some_and(|t| t.bound),
        token,
        mode,
        valid_until: i64::MAX,
    })
}
