//! `tollgate test [PATHS]`: run policy test files, report like `cargo test`, optionally as JUnit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use quick_junit::{NonSuccessKind, Report, TestCase as JunitCase, TestCaseStatus, TestSuite};

use crate::authz::Authorizer;
use crate::config::{self, ConfigSource};
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
            let paths: Vec<_> = args.paths.iter().map(|p| p.display().to_string()).collect();
            eprintln!("error: no test files under {}", paths.join(", "));
            return Exit::Error;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Error;
        }
    };
    // One authorizer per config the files name, built once.
    let mut authorizers: BTreeMap<String, Authorizer> = BTreeMap::new();
    let mut report = Report::new("tollgate policy tests");
    let mut tally = Tally::default();
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
        if !authorizers.contains_key(&key) {
            match config::load(&source, 1) {
                Ok((_, snapshot)) => {
                    authorizers.insert(key.clone(), Authorizer::offline(snapshot));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Exit::Invalid;
                }
            }
        }
        let Some(authorizer) = authorizers.get(&key) else {
            return Exit::Error;
        };
        tally.all_policies.extend(
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
            let status = tally.run(authorizer, case);
            suite.add_test_case(JunitCase::new(case.name.clone(), status));
        }
        report.add_test_suite(suite);
    }
    tally.print();
    if let Some(path) = &args.junit
        && let Err(e) = write_junit(&report, path)
    {
        eprintln!("error: {e}");
        return Exit::Error;
    }
    if tally.failed > 0 {
        Exit::TestsFailed
    } else {
        Exit::Ok
    }
}

/// Outcomes so far, and which policies decided at least one case.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    failures: Vec<(String, String)>,
    covered: BTreeSet<String>,
    all_policies: BTreeSet<String>,
}

impl Tally {
    /// Runs one case, prints its line as `cargo test` does, and returns its JUnit status.
    fn run(&mut self, authorizer: &Authorizer, case: &policytest::TestCase) -> TestCaseStatus {
        match policytest::run_case(authorizer, case) {
            Ok(CaseOutcome {
                passed: true,
                determining,
                ..
            }) => {
                self.covered.extend(determining);
                self.passed += 1;
                println!("case {} ... ok", case.name);
                TestCaseStatus::success()
            }
            Ok(outcome) => {
                self.covered.extend(outcome.determining.iter().cloned());
                self.failed += 1;
                println!("case {} ... FAILED", case.name);
                let message = format!("expected {}, got {}", case.expect, outcome.actual);
                self.failures.push((case.name.clone(), message.clone()));
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(message);
                status
            }
            Err(error) => {
                self.failed += 1;
                println!("case {} ... ERROR", case.name);
                self.failures
                    .push((case.name.clone(), format!("invalid case: {error}")));
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                status.set_message(error.to_string());
                status
            }
        }
    }

    /// The failures, the coverage line and the summary.
    fn print(&self) {
        if !self.failures.is_empty() {
            println!("\nfailures:");
            for (name, message) in &self.failures {
                println!("---- {name} ----\n{message}");
            }
        }
        let uncovered: Vec<&str> = self
            .all_policies
            .difference(&self.covered)
            .map(String::as_str)
            .collect();
        println!(
            "\ncoverage: {} of {} policies determined at least one case{}",
            self.all_policies.len() - uncovered.len(),
            self.all_policies.len(),
            if uncovered.is_empty() {
                String::new()
            } else {
                format!(" (never: {})", uncovered.join(", "))
            }
        );
        println!("summary: {} passed, {} failed", self.passed, self.failed);
    }
}

fn write_junit(report: &Report, path: &Path) -> Result<(), String> {
    let xml = report
        .to_string()
        .map_err(|e| format!("JUnit report: {e}"))?;
    std::fs::write(path, xml).map_err(|e| format!("{}: {e}", path.display()))
}
