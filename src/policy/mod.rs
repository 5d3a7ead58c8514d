//! Cedar schema, policies and entities: loaded, validated against the schema, and given stable
//! policy ids (`@id("…")` when present, else `file.cedar#N`), with their source lines.

mod decide;
mod graph;
mod index;
mod ip;

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{Authorizer, Entities, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

pub use decide::{DecideError, Decision, decide, decide_evaluation, decide_raw, decide_unindexed};
pub use index::PolicyIndex;

/// A source text and the name to report it under.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as shown to the user.
    pub name: String,
    /// Contents.
    pub text: String,
}

/// Where a policy is defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// File name.
    pub file: String,
    /// 1-based line of the policy's first character.
    pub line: usize,
}

/// Validated Cedar inputs, ready to answer queries.
pub struct PolicyStore {
    pub(crate) schema: Schema,
    pub(crate) policies: PolicySet,
    pub(crate) entities: Entities,
    pub(crate) authorizer: Authorizer,
    pub(crate) index: PolicyIndex,
    /// Which entities each entity's attributes name, for building a request's entity slice.
    pub(crate) graph: graph::EntityGraph,
    sources: HashMap<String, PolicySource>,
    schema_source: SourceFile,
    /// Cedar's validator warnings (e.g. a policy that can never be satisfied), located.
    warnings: Vec<PolicyError>,
}

/// A problem in a policy-store file, located to `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {kind}: {message}{}", help.as_ref().map(|h| format!(" (help: {h})")).unwrap_or_default())]
pub struct PolicyError {
    /// What went wrong, broadly.
    pub kind: PolicyErrorKind,
    /// File name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The diagnostic.
    pub message: String,
    /// Cedar's suggestion, when it has one.
    pub help: Option<String>,
}

/// The stage at which a policy-store file failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyErrorKind {
    /// The schema does not parse or is inconsistent.
    #[error("schema error")]
    Schema,
    /// A policy file does not parse.
    #[error("syntax error")]
    Syntax,
    /// A policy does not type-check against the schema.
    #[error("validation error")]
    Validation,
    /// The entities file is not valid for the schema.
    #[error("entities error")]
    Entities,
    /// Two policies share an id.
    #[error("duplicate policy id")]
    DuplicateId,
}

// === impl PolicyStore ===

impl PolicyStore {
    /// Loads and strictly validates everything; returns every problem found, not just the first.
    pub fn load(
        schema_file: &SourceFile,
        policy_files: &[SourceFile],
        entities: Option<&SourceFile>,
    ) -> Result<Self, Vec<PolicyError>> {
        let schema = match Schema::from_cedarschema_str(&schema_file.text) {
            Ok((schema, _warnings)) => schema,
            Err(e) => return Err(vec![located(PolicyErrorKind::Schema, schema_file, &e)]),
        };
        let mut errors = Vec::new();
        let mut added = Added::default();
        for file in policy_files {
            added.file(file, &mut errors);
        }
        let Added {
            policies,
            sources,
            file_of,
        } = added;
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        let locate = |id: String, diag: &dyn Diagnostic| match file_of.get(&id) {
            Some(file) => located(PolicyErrorKind::Validation, file, diag),
            None => unlocated(PolicyErrorKind::Validation, "<policies>", diag),
        };
        for error in result.validation_errors() {
            errors.push(locate(error.policy_id().to_string(), error));
        }
        let warnings: Vec<PolicyError> = result
            .validation_warnings()
            .map(|w| locate(w.policy_id().to_string(), w))
            .collect();
        let entities = load_entities(entities, &schema, schema_file, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        let index = PolicyIndex::new(&policies);
        let graph = graph::EntityGraph::new(&entities, &policies);
        Ok(Self {
            schema,
            policies,
            entities,
            authorizer: Authorizer::new(),
            index,
            graph,
            sources,
            schema_source: schema_file.clone(),
            warnings,
        })
    }

    /// Where a policy is defined.
    pub fn source(&self, id: &str) -> Option<&PolicySource> {
        self.sources.get(id)
    }

    /// How many policies are loaded.
    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Cedar's own validator warnings, for `validate`.
    pub fn warnings(&self) -> &[PolicyError] {
        &self.warnings
    }

    /// The schema's source, for locating lints.
    pub fn schema_source(&self) -> &SourceFile {
        &self.schema_source
    }

    /// Every policy with its id.
    pub fn policies(&self) -> impl Iterator<Item = &cedar_policy::Policy> {
        self.policies.policies()
    }
}

/// The policies added so far, each with where it is defined.
#[derive(Default)]
struct Added<'a> {
    policies: PolicySet,
    sources: HashMap<String, PolicySource>,
    file_of: HashMap<String, &'a SourceFile>,
}

impl<'a> Added<'a> {
    /// Parses one file and adds its policies under their `@id` (or `<file>#<n>`), recording
    /// syntax errors, templates and duplicate ids in `errors`.
    fn file(&mut self, file: &'a SourceFile, errors: &mut Vec<PolicyError>) {
        let parsed = match PolicySet::from_str(&file.text) {
            Ok(set) => set,
            Err(e) => {
                errors.push(located(PolicyErrorKind::Syntax, file, &e));
                return;
            }
        };
        if let Some(template) = parsed.templates().next() {
            errors.push(PolicyError {
                kind: PolicyErrorKind::Syntax,
                file: file.name.clone(),
                line: 1,
                column: 1,
                message: format!(
                    "`{}` is a template; templates are not supported",
                    template.id()
                ),
                help: Some("write a static policy without `?principal`/`?resource`".into()),
            });
            return;
        }
        let mut in_file: Vec<_> = parsed.policies().collect();
        // Default ids are `policy0`, `policy1`, … in source order.
        in_file.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let mut positions = Positions::new(&file.text);
        for (index, policy) in in_file.into_iter().enumerate() {
            let (line, column) = positions.next(policy.to_string().trim());
            let id = policy
                .annotation("id")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{}#{index}", base_name(&file.name)));
            if let Err(e) = self.policies.add(policy.new_id(PolicyId::new(&id))) {
                errors.push(PolicyError {
                    kind: PolicyErrorKind::DuplicateId,
                    file: file.name.clone(),
                    line,
                    column,
                    message: e.to_string(),
                    help: Some("give each policy a unique `@id(\"…\")`".into()),
                });
                continue;
            }
            self.sources.insert(
                id.clone(),
                PolicySource {
                    file: file.name.clone(),
                    line,
                },
            );
            self.file_of.insert(id, file);
        }
    }
}

/// Where each policy's text starts in its file. Policies come in file order, so each one is
/// found after the previous one: one pass over the file, not one per policy (10,000 policies
/// in a file is real).
struct Positions<'a> {
    text: &'a str,
    /// Where the previous policy ended.
    cursor: usize,
    /// Where newline counting got to (the previous policy's start), and the line there.
    counted: usize,
    line: usize,
}

impl<'a> Positions<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            cursor: 0,
            counted: 0,
            line: 1,
        }
    }

    /// The 1-based line and column of the next policy, whose text is `needle`.
    fn next(&mut self, needle: &str) -> (usize, usize) {
        let text = self.text;
        let offset = text
            .get(self.cursor..)
            .and_then(|rest| rest.find(needle))
            .map_or(self.cursor, |at| self.cursor + at);
        self.line += text
            .get(self.counted..offset)
            .map_or(0, |s| s.matches('\n').count());
        self.counted = offset;
        let line_start = text
            .get(..offset)
            .and_then(|s| s.rfind('\n'))
            .map_or(0, |at| at + 1);
        let column = text
            .get(line_start..offset)
            .map_or(0, |s| s.chars().count())
            + 1;
        self.cursor = offset + needle.len().min(text.len().saturating_sub(offset));
        (self.line, column)
    }
}

/// The entities file, or without one the schema's action entities: without them `action in
/// Action::"group"` would match nothing, unlike Cedar and `tollgate validate`.
fn load_entities(
    file: Option<&SourceFile>,
    schema: &Schema,
    schema_file: &SourceFile,
    errors: &mut Vec<PolicyError>,
) -> Entities {
    match file {
        Some(file) => Entities::from_json_str(&file.text, Some(schema)).unwrap_or_else(|e| {
            errors.push(unlocated(PolicyErrorKind::Entities, &file.name, &e));
            Entities::empty()
        }),
        None => schema.action_entities().unwrap_or_else(|e| {
            errors.push(unlocated(PolicyErrorKind::Schema, &schema_file.name, &e));
            Entities::empty()
        }),
    }
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("policies", &self.sources.len())
            .finish_non_exhaustive()
    }
}

fn located(kind: PolicyErrorKind, file: &SourceFile, diag: &dyn Diagnostic) -> PolicyError {
    let offset = diag
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset())
        .or_else(|| {
            diag.related()
                .and_then(|mut r| r.next())
                .and_then(|d| d.labels())
                .and_then(|mut labels| labels.next())
                .map(|label| label.offset())
        })
        .unwrap_or(0);
    let (line, column) = line_column(&file.text, offset);
    PolicyError {
        kind,
        file: file.name.clone(),
        line,
        column,
        message: message_of(diag),
        help: diag.help().map(|h| h.to_string()),
    }
}

fn unlocated(kind: PolicyErrorKind, file: &str, diag: &dyn Diagnostic) -> PolicyError {
    PolicyError {
        kind,
        file: file.to_owned(),
        line: 1,
        column: 1,
        message: message_of(diag),
        help: diag.help().map(|h| h.to_string()),
    }
}

/// The diagnostic plus its related diagnostics (Cedar reports one parse error per related).
fn message_of(diag: &dyn Diagnostic) -> String {
    let mut message = diag.to_string();
    if let Some(related) = diag.related() {
        for r in related {
            let text = r.to_string();
            if !message.contains(&text) {
                message.push_str("; ");
                message.push_str(&text);
            }
        }
    }
    message
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str =
        r#"entity App; entity Doc; action read appliesTo { principal: App, resource: Doc };"#;

    fn file(name: &str, text: &str) -> SourceFile {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn assigns_ids_and_sources() {
        let store = PolicyStore::load(
            &file("s.cedarschema", SCHEMA),
            &[file(
                "p/a.cedar",
                "permit(principal, action, resource);\n\n@id(\"named\")\nforbid(principal, action, resource) when { false };\n// a comment\npermit (\n  principal,\n  action,\n  resource\n);\n\n  @id(\"last\")\n  permit(principal, action, resource);",
            )],
            None,
        )
        .unwrap();
        assert_eq!(store.policy_count(), 4);
        assert_eq!(store.source("a.cedar#0").unwrap().line, 1);
        assert_eq!(store.source("named").unwrap().line, 3);
        assert_eq!(store.source("a.cedar#2").unwrap().line, 6);
        assert_eq!(
            store.source("last").unwrap().line,
            12,
            "annotations start the policy"
        );
    }

    #[test]
    fn reports_file_line_and_column() {
        let errors = PolicyStore::load(
            &file("s.cedarschema", SCHEMA),
            &[file(
                "bad.cedar",
                "permit(principal, action, resource);\npermit(principal action, resource);",
            )],
            None,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        let e = &errors[0];
        assert_eq!(
            (e.kind, e.file.as_str(), e.line),
            (PolicyErrorKind::Syntax, "bad.cedar", 2)
        );
        assert!(e.to_string().starts_with("bad.cedar:2:"), "{e}");

        let errors = PolicyStore::load(
            &file("s.cedarschema", SCHEMA),
            &[file(
                "v.cedar",
                "\npermit(principal, action, resource) when { principal.nope };",
            )],
            None,
        )
        .unwrap_err();
        assert_eq!(errors[0].kind, PolicyErrorKind::Validation);
        assert_eq!(errors[0].line, 2, "{}", errors[0]);

        let errors = PolicyStore::load(
            &file("s.cedarschema", SCHEMA),
            &[
                file("a.cedar", "@id(\"x\") permit(principal, action, resource);"),
                file("b.cedar", "@id(\"x\") permit(principal, action, resource);"),
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(errors[0].kind, PolicyErrorKind::DuplicateId);
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
        assert_eq!(line_column("", 10), (1, 1));
    }
}
