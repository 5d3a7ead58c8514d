//! `tollgate test [PATHS]`: run policy test files, report like `cargo test`, optionally as JUnit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use quick_junit::{NonSuccessKind, Report, TestCase as JunitCase, TestCaseStatus, TestSuite};

use crate::authz::Authorizer;
use crate::config::{Config, ConfigSource};
use crate::policytest::{self, CaseOutcome};

use super::{ConfigArg, Exit};

/// Arguments of `test`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A test file is YAML or JSON: `cases:` each with `name`, either `caller` \
(spiffe_id, token: {client_id, user, scopes, bound}) plus `request` (method, path, source_ip) or \
`cedar` (principal, action, resource, context), and `expect` (decision, policies, reason). \
Exit code: 0 all passed, 4 a case failed, 1 error, 3 invalid config."
)]
pub struct TestArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Test files or folders of them.
    #[arg(default_value = "policies/tests")]
    paths: Vec<PathBuf>,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

pub(super) fn run(args: TestArgs) -> Exit {
    let files = match policytest::discover(&args.paths) {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => {
            eprintln!("error: no test files under {:?}", args.paths);
            return Exit::Error;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Error;
        }
    };
    let mut configs: BTreeMap<String, Authorizer> = BTreeMap::new();
    let mut report = Report::new("tollgate policy tests");
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    let mut all_policies = BTreeSet::new();
    for file in &files {
        let tests = match policytest::read(file) {
            Ok(tests) => tests,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Error;
            }
        };
        let source = match &tests.config {
            Some(path) => ConfigSource::File(file.parent().unwrap_or(Path::new(".")).join(path)),
            None => args.config.source(),
        };
        let key = source.config_name();
        if !configs.contains_key(&key) {
            match Config::load(&source, 1) {
                Ok(config) => {
                    configs.insert(key.clone(), Authorizer::offline(config.snapshot));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Exit::Invalid;
                }
            }
        }
        let Some(authorizer) = configs.get(&key) else {
            return Exit::Error;
        };
        all_policies.extend(
            authorizer
                .snapshot()
                .policies
                .policies()
                .map(|p| p.id().to_string()),
        );
        println!(
            "\nrunning {} cases from {}",
            tests.cases.len(),
            file.display()
        );
        let mut suite = TestSuite::new(file.display().to_string());
        for case in &tests.cases {
            let status = match policytest::run_case(authorizer, case) {
                Ok(CaseOutcome {
                    passed: true,
                    determining,
                    ..
                }) => {
                    covered.extend(determining);
                    passed += 1;
                    println!("case {} ... ok", case.name);
                    TestCaseStatus::success()
                }
                Ok(outcome) => {
                    covered.extend(outcome.determining);
                    failed += 1;
                    println!("case {} ... FAILED", case.name);
                    let message = format!("expected {:?}, got {}", case.expect, outcome.actual);
                    failures.push((case.name.clone(), message.clone()));
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_message(message);
                    status
                }
                Err(error) => {
                    failed += 1;
                    println!("case {} ... ERROR", case.name);
                    failures.push((case.name.clone(), format!("invalid case: {error}")));
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                    status.set_message(error);
                    status
                }
            };
            suite.add_test_case(JunitCase::new(case.name.clone(), status));
        }
        report.add_test_suite(suite);
    }
    if !failures.is_empty() {
        println!("\nfailures:");
        for (name, message) in &failures {
            println!("---- {name} ----\n{message}");
        }
    }
    let uncovered: Vec<&String> = all_policies.difference(&covered).collect();
    println!(
        "\ncoverage: {} of {} policies determined at least one case{}",
        all_policies.len() - uncovered.len(),
        all_policies.len(),
        if uncovered.is_empty() {
            String::new()
        } else {
            format!(
                " (never: {})",
                uncovered
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    println!("summary: {passed} passed, {failed} failed");
    if let Some(path) = &args.junit {
        let xml = match report.to_string() {
            Ok(xml) => xml,
            Err(e) => {
                eprintln!("error: JUnit report: {e}");
                return Exit::Error;
            }
        };
        if let Err(e) = std::fs::write(path, xml) {
            eprintln!("error: {}: {e}", path.display());
            return Exit::Error;
        }
    }
    if failed > 0 {
        Exit::TestsFailed
    } else {
        Exit::Ok
    }
}
