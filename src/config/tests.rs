use std::time::Duration;

use rustls_pki_types::UnixTime;

use super::fixture::demo_config as config_with;
use super::*;
use crate::identity::token::TokenError;
use crate::snapshot::build::BuildError;
use crate::snapshot::source::SourceError;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn load_err(edit: impl Fn(String) -> String) -> ConfigError {
    let (_dir, source) = config_with(edit);
    load(&source, 1).unwrap_err()
}

#[test]
fn embedded_default_loads() {
    let (config, snapshot) = load(&ConfigSource::Embedded, 7).unwrap();
    assert_eq!(snapshot.generation, 7);
    assert_eq!(config.settings.listen.to_string(), "127.0.0.1:9191");
    assert!(snapshot.policies.policy_count() >= 8);
    assert!(snapshot.routes.iter().count() >= 7);
}

#[test]
fn unknown_key_names_key_and_line() {
    let e = load_err(|c| c.replace("[identity]\n", "[identity]\nsorce = \"xfcc\"\n"));
    let ConfigError::Syntax { line, message, .. } = &e else {
        panic!("{e}");
    };
    assert!(message.contains("sorce"), "{message}");
    assert!(*line > 1);
    assert!(e.to_string().contains("tollgate.toml:"), "{e}");
}

#[test]
fn semantic_errors_name_key_and_line() {
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c: String| c.replace("GET /orders/{id}\"", "get /orders/{id}\"")),
            "routes[1].match",
        ),
        (
            Box::new(|c: String| c.replace("algorithms = [\"ES256\"]", "algorithms = [\"none\"]")),
            "issuers[0].algorithms",
        ),
        (
            Box::new(|c: String| c.replace("algorithms = [\"ES256\"]", "algorithms = [\"HS256\"]")),
            "issuers[0].algorithms",
        ),
        (
            Box::new(|c: String| {
                c.replace("action = \"orders:create\"", "action = \"orders:crate\"")
            }),
            "routes[2].action",
        ),
        (
            Box::new(|c: String| c.replace("source = \"certificate\"", "source = \"cert\"")),
            "identity.source",
        ),
        (
            Box::new(|c: String| c.replace("name = \"demo.tollgate.dev\"", "name = \"Demo\"")),
            "identity.trust_domains[0].name",
        ),
        (
            Box::new(|c: String| {
                c.replace(
                    "name = \"demo.tollgate.dev\"",
                    "name = \"demo.tollgate.dev\"\nbundle_endpoint = \"https://demo.example/bundle\"",
                )
            }),
            "identity.trust_domains[0].bundle_endpoint",
        ),
        (
            Box::new(|c: String| {
                c.replace(
                    "[identity]\n",
                    "[identity]\nworkload_api = \"/run/agent.sock\"\n",
                )
            }),
            "identity.workload_api",
        ),
        (
            Box::new(|c: String| {
                c.replace(
                    "resource = 'Payment::\"{id}\"'",
                    "resource = 'Payment::\"{pid}\"'",
                )
            }),
            "routes[4].match",
        ),
        (
            Box::new(|c: String| {
                c.replace("listen = \"127.0.0.1:9191\"", "listen = \"localhost\"")
            }),
            "server.listen",
        ),
        // Review finding: queue lengths were unbounded; a huge one failed at start, not here.
        (
            Box::new(|c: String| c + "\n[audit]\nqueue = 10000000000\n"),
            "audit.queue",
        ),
        (
            Box::new(|c: String| c + "\n[audit]\notlp_queue = 10000000000\n"),
            "audit.otlp_queue",
        ),
    ];
    for (edit, key) in cases {
        let e = load_err(edit);
        let at = e
            .location()
            .unwrap_or_else(|| panic!("{key}: expected a located error, got {e}"));
        assert_eq!(at.key, key, "{e}");
        assert!(at.line > 1, "{e}");
    }
}

#[test]
fn broken_policy_names_file_and_line() {
    let (dir, source) = config_with(|c| c);
    std::fs::write(
        dir.path().join("policies/zz.cedar"),
        "permit(principal, action, resource);\nforbid(principal,, action, resource);\n",
    )
    .unwrap();
    let e = load(&source, 1).unwrap_err();
    let ConfigError::Build(BuildError::Policies(errors)) = &e else {
        panic!("{e}");
    };
    assert_eq!(errors[0].line, 2, "{e}");
    assert!(errors[0].file.ends_with("zz.cedar"));
}

#[test]
fn missing_file_is_a_read_error() {
    let e = load_err(|c| {
        c.replace(
            &format!("{MANIFEST}/deploy/demo/ca.pem"),
            "/nonexistent/ca.pem",
        )
    });
    assert!(matches!(e, ConfigError::Build(BuildError::Read(_))), "{e}");
}

/// Documents held in memory, as a fetched JWKS or a streamed bundle would be.
#[derive(Default)]
struct Memory {
    documents: std::collections::BTreeMap<Document, String>,
    policies: Vec<SourceFile>,
}

impl Source for Memory {
    fn read(&self, document: &Document) -> Result<SourceFile, SourceError> {
        self.documents
            .get(document)
            .map(|text| SourceFile {
                name: format!("memory:{document}"),
                text: text.clone(),
            })
            .ok_or_else(|| SourceError {
                name: format!("memory:{document}"),
                reason: "not fetched".into(),
            })
    }

    fn read_policies(&self, _folder: &Folder) -> Result<Vec<SourceFile>, SourceError> {
        Ok(self.policies.clone())
    }
}

/// The embedded estate's documents, copied into memory.
fn embedded_in_memory(spec: &Spec) -> Memory {
    let files = ConfigSource::Embedded;
    Memory {
        documents: spec
            .documents()
            .map(|d| (d.clone(), files.read(d).unwrap().text))
            .collect(),
        policies: files.read_policies(&spec.policies.folder).unwrap(),
    }
}

fn demo_token() -> String {
    crate::demo::mint(&crate::demo::DemoRequest {
        app: "payments".into(),
        scopes: vec!["orders.read".into()],
        user: None,
        bind: false,
        lifetime: Duration::from_secs(600),
    })
    .unwrap()
    .token
}

#[test]
fn a_build_reads_every_document_through_its_source() {
    let config = Config::parse(&ConfigSource::Embedded).unwrap();
    let mut memory = embedded_in_memory(&config.spec);
    let token = demo_token();
    let from_memory = config.build(&memory, 2).unwrap();
    let from_files = config.build(&ConfigSource::Embedded, 2).unwrap();
    assert_eq!(
        from_memory.policies.policy_count(),
        from_files.policies.policy_count()
    );
    assert!(
        from_memory
            .identity
            .issuers
            .verify(&token, UnixTime::now())
            .is_ok()
    );

    // A key set "fetched" without the demo key: the same spec now refuses the demo token.
    let jwks = Document::File("issuer.jwks.json".into());
    memory
        .documents
        .insert(jwks.clone(), r#"{"keys": []}"#.into());
    let rotated = config.build(&memory, 3).unwrap();
    assert_eq!(
        rotated
            .identity
            .issuers
            .verify(&token, UnixTime::now())
            .err(),
        Some(TokenError::UnknownKey("demo-2026".into()))
    );

    // A document the source cannot serve, or serves as garbage, is named and located like a
    // file's would be.
    memory.documents.insert(jwks.clone(), "{".into());
    let e = config.build(&memory, 4).unwrap_err();
    let ConfigError::Build(BuildError::Invalid { at, message }) = &e else {
        panic!("{e}");
    };
    assert_eq!(at.key, "issuers[0].jwks_file");
    assert!(at.line > 1, "{e}");
    assert!(message.starts_with("memory:issuer.jwks.json: "), "{e}");
    memory.documents.remove(&jwks);
    let e = config.build(&memory, 4).unwrap_err();
    assert_eq!(
        e.to_string(),
        "memory:issuer.jwks.json: cannot read: not fetched"
    );
}

#[test]
fn parsing_reads_no_document_and_the_build_names_the_missing_one() {
    let (_dir, source) = config_with(|c| {
        c.replace(
            &format!("{MANIFEST}/deploy/demo/issuer.jwks.json"),
            "/nonexistent/issuer.jwks.json",
        )
    });
    let config = Config::parse(&source).unwrap();
    let e = config.build(&source, 1).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Build(BuildError::Read(SourceError { name, .. })) if name == "/nonexistent/issuer.jwks.json"),
        "{e}"
    );
}

#[test]
fn watched_names_the_config_apart_from_its_documents() {
    let (dir, source) = config_with(|c| c);
    let watched = Config::parse(&source).unwrap().watched;
    assert_eq!(watched.config, Some(dir.path().join("tollgate.toml")));
    assert!(
        watched
            .files
            .iter()
            .any(|f| f.ends_with("deploy/demo/issuer.jwks.json"))
    );
    assert!(
        !watched.files.contains(&dir.path().join("tollgate.toml")),
        "{watched:?}"
    );
    assert_eq!(watched.trees, vec![dir.path().join("policies")]);
    assert_eq!(
        Config::parse(&ConfigSource::Embedded).unwrap().watched,
        Watched::default()
    );
}

#[test]
fn fetched_keys_are_checked_where_written() {
    let file_keys = without_jwks_file;
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(Edit, &str, &str)> = vec![
        (
            Box::new(move |c| {
                file_keys(c).replace(
                    "[[issuers]]\n",
                    "[[issuers]]\njwks_uri = \"http://idp.example/keys\"\n",
                )
            }),
            "issuers[0].jwks_uri",
            "not https",
        ),
        (
            Box::new(move |c| {
                file_keys(c).replace(
                    "[[issuers]]\n",
                    "[[issuers]]\njwks_uri = \"https://user@idp.example/keys\"\n",
                )
            }),
            "issuers[0].jwks_uri",
            "user name",
        ),
        (
            Box::new(move |c| {
                file_keys(c).replace(
                    "[[issuers]]\n",
                    "[[issuers]]\njwks_uri = \"https://idp.example/keys\"\ndiscovery = true\n",
                )
            }),
            "issuers[0].discovery",
            "not both",
        ),
        (
            Box::new(|c: String| {
                c.replace(
                    "[[issuers]]\n",
                    "[[issuers]]\njwks_uri = \"https://idp.example/keys\"\n",
                )
            }),
            "issuers[0].jwks_file",
            "not several",
        ),
        (
            Box::new(move |c| {
                file_keys(c).replace("[[issuers]]\n", "[[issuers]]\njwks_uri = \"https://idp.example/keys\"\njwks_refresh_seconds = 10\n")
            }),
            "issuers[0].jwks_refresh_seconds",
            "jwks_refresh_min_seconds (300)",
        ),
        (
            Box::new(move |c| {
                file_keys(c).replace("[[issuers]]\n", "[[issuers]]\njwks_uri = \"https://idp.example/keys\"\njwks_max_age_seconds = 600\n")
            }),
            "issuers[0].jwks_max_age_seconds",
            "stale before the next refresh",
        ),
        (
            Box::new(move |c| {
                file_keys(c).replace("[[issuers]]\n", "[[issuers]]\njwks_uri = \"https://idp.example/keys\"\nunknown_kid_cooldown_seconds = 0\n")
            }),
            "issuers[0].unknown_kid_cooldown_seconds",
            "hammer",
        ),
        // An issuer's max-age may ask for the longest refresh; the keys must outlive it.
        (
            Box::new(move |c| {
                file_keys(c).replace(
                    "[[issuers]]\n",
                    "[[issuers]]\njwks_uri = \"https://idp.example/keys\"\n\
                     jwks_refresh_max_seconds = 86400\njwks_max_age_seconds = 86400\n",
                )
            }),
            "issuers[0].jwks_max_age_seconds",
            "jwks_refresh_max_seconds",
        ),
        (
            Box::new(move |c| {
                file_keys(c).replace(
                    "[[issuers]]\n",
                    "[[issuers]]\njwks_uri = \"https://idp.example/keys\"\n\
                     jwks_refresh_max_seconds = 18446744073709551614\n\
                     jwks_max_age_seconds = 18446744073709551615\n",
                )
            }),
            "issuers[0].jwks_max_age_seconds",
            "at most",
        ),
        (
            Box::new(|c: String| {
                c.replace(
                    "[identity]\n",
                    "[identity]\nworkload_api = \"unix:///run/agent.sock\"\n\
                     workload_api_max_age_seconds = 18446744073709551615\n",
                )
            }),
            "identity.workload_api_max_age_seconds",
            "at most",
        ),
        (
            Box::new(move |c| {
                file_keys(c).replace(
                    "[[issuers]]\n",
                    "[[issuers]]\njwks_uri = \"https://idp.example/keys\"\n\
                     unknown_kid_cooldown_seconds = 18446744073709551615\n",
                )
            }),
            "issuers[0].unknown_kid_cooldown_seconds",
            "at most",
        ),
        (
            Box::new(|c: String| c.replace("[[issuers]]\n", "[[issuers]]\nstatus_lists = []\n")),
            "issuers[0].status_lists",
            "list the status list URIs",
        ),
        (
            Box::new(|c: String| {
                c.replace(
                    "[[issuers]]\n",
                    "[[issuers]]\nstatus_lists = [\"http://idp.example/lists/\"]\n",
                )
            }),
            "issuers[0].status_lists",
            "not https",
        ),
        (
            Box::new(|c: String| {
                c.replace(
                    "[[issuers]]\n",
                    "[[issuers]]\nstatus_lists = [\"https://idp.example/lists/\"]\n\
                     status_list_refresh_min_seconds = 0\n",
                )
            }),
            "issuers[0].status_list_refresh_seconds",
            "0 < status_list_refresh_min_seconds",
        ),
        (
            Box::new(|c: String| {
                c.replace(
                    "[[issuers]]\n",
                    "[[issuers]]\nstatus_lists = [\"https://idp.example/lists/\"]\n\
                     status_list_max_age_seconds = 3600\n",
                )
            }),
            "issuers[0].status_list_max_age_seconds",
            "go stale before their next refresh",
        ),
        (
            Box::new(|c: String| format!("{c}\n[signals]\nspike_min_calls = 0\n")),
            "signals.spike_min_calls",
            "at least 1",
        ),
        (
            Box::new(|c: String| format!("{c}\n[signals]\nidentities_max = 0\n")),
            "signals.identities_max",
            "at least 1",
        ),
        (
            Box::new(|c: String| {
                format!("{c}\n[signals]\nenabled = false\nvolume_spike = \"deny\"\n")
            }),
            "signals.volume_spike",
            "enabled = false",
        ),
    ];
    for (edit, key, words) in cases {
        let e = load_err(edit);
        let at = e
            .location()
            .unwrap_or_else(|| panic!("{key}: expected a located error, got {e}"));
        assert_eq!(at.key, key, "{e}");
        assert!(e.to_string().contains(words), "{key}: {e}");
    }
}

/// Built without a fetcher (as `validate` and `test` build), an issuer whose keys are fetched
/// has none: its tokens are refused `token_keys_unavailable`, and it holds up readiness.
#[test]
fn an_issuer_with_fetched_keys_built_offline_refuses_its_tokens() {
    let (_dir, source) = config_with(|c| {
        without_jwks_file(c).replace(
            "[[issuers]]\n",
            "[[issuers]]\njwks_uri = \"https://idp.example/keys\"\n",
        )
    });
    let (_, snapshot) = load(&source, 1).unwrap();
    let issuer = snapshot.identity.issuers.iter().next().unwrap();
    assert!(issuer.awaits_keys());
    let token = crate::demo::mint(&crate::demo::DemoRequest {
        app: "orders".into(),
        scopes: vec!["orders.read".into()],
        user: None,
        bind: false,
        lifetime: Duration::from_secs(60),
    })
    .unwrap()
    .token;
    assert!(matches!(
        snapshot.identity.issuers.verify(&token, UnixTime::now()),
        Err(TokenError::KeysUnavailable(_))
    ));
}

fn without_jwks_file(config: String) -> String {
    let mut out: String = config
        .lines()
        .filter(|l| !l.starts_with("jwks_file"))
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// Review finding: `file = ""`, the README's spelling of "no revocation file", named the
/// config's own folder as the file and refused the whole configuration.
#[test]
fn an_empty_revocation_file_setting_means_none() {
    let (_dir, source) = config_with(|c| c.replace("file = \"revoked.toml\"", "file = \"\""));
    let (_, snapshot) = load(&source, 1).unwrap();
    assert!(snapshot.identity.revocations.is_empty());
}

#[test]
fn trusted_proxies_are_checked_and_named() {
    let with = |proxy: &'static str| {
        move |c: String| c + &format!("\n[[server.trusted_proxies]]\n{proxy}\n")
    };
    let cases = [
        (
            "name = \"a\"\ncertificate_format = \"nginx\"\nnetworks = [\"10.0.0.0/8\"]",
            "certificate_header",
        ),
        (
            "name = \"a\"\ncertificate_format = \"xfcc\"\ncertificate_header = \"x\"\nnetworks = [\"10.0.0.0/8\"]",
            "\"nginx\"` only",
        ),
        (
            "name = \"a\"\ncertificate_format = \"haproxy\"\nnetworks = [\"10.0.0.0/8\"]",
            "`haproxy` is not one of",
        ),
        (
            "name = \"a\"\nnetworks = [\"10.0.0.300/8\"]",
            "not a network",
        ),
        ("name = \"a\"", "names neither"),
        (
            "name = \"a\"\nidentities = [\"spiffe://mesh/envoy\"]",
            "needs `[server.tls]`",
        ),
    ];
    for (proxy, expected) in cases {
        let e = load_err(with(proxy));
        let text = e.to_string();
        assert!(text.contains("server.trusted_proxies"), "{text}");
        assert!(text.contains(expected), "{proxy}: {text}");
    }
    let (_dir, source) = config_with(with(
        "name = \"edge\"\ncertificate_format = \"nginx\"\ncertificate_header = \"X-Client-Cert\"\nnetworks = [\"10.0.0.1\", \"192.168.0.0/16\"]",
    ));
    let (config, _) = load(&source, 1).unwrap();
    // The demo's own proxy entry comes first.
    let proxy = &config.settings.trusted_proxies[1];
    assert_eq!(
        proxy.certificate,
        Some(CertificateHeader::Nginx("x-client-cert".into()))
    );
    assert_eq!(proxy.networks.len(), 2);
    assert!(config.settings.http_listen.is_some());
}

#[test]
fn the_authzen_mapping_is_checked_against_the_schema() {
    // The demo's own `[authzen]` table, replaced by each case's.
    let without = |c: String| {
        let at = c.find("[authzen]").unwrap();
        let end = c
            .get(at..)
            .and_then(|rest| rest.find("\n\n"))
            .map_or(c.len(), |e| at + e);
        format!("{}{}", c.get(..at).unwrap(), c.get(end..).unwrap())
    };
    let e = load_err(|c| without(c) + "\n[authzen]\npep_action = \"orders:peek\"\n");
    let text = e.to_string();
    assert!(text.contains("authzen.pep_action"), "{text}");
    assert!(
        text.contains("`orders:peek` is not in the schema"),
        "{text}"
    );
    let e = load_err(|c| without(c) + "\n[authzen]\ntypes = { user = \"Usr\" }\n");
    let text = e.to_string();
    assert!(text.contains("authzen.types.user"), "{text}");
    assert!(
        text.contains("`Usr`, which is not an entity type"),
        "{text}"
    );
    let e = load_err(|c| without(c) + "\n[authzen]\nbase_url = \"http://pdp\"\n");
    assert!(e.to_string().contains("authzen.base_url"), "{e}");
    let (_dir, source) = config_with(|c| without(c) + "\n[authzen]\ntypes = { user = \"User\" }\n");
    let (_, snapshot) = load(&source, 1).unwrap();
    let mapping = snapshot.authzen.unwrap();
    assert_eq!(&*mapping.cedar_type("user"), "User");
    assert_eq!(&*mapping.cedar_type("order"), "order");
    let (_dir, source) = config_with(without);
    assert!(load(&source, 1).unwrap().1.authzen.is_none());
}

/// Review finding: with `workload_api_tls` the gRPC listener served mTLS while the HTTP
/// listener silently served plaintext.
#[test]
fn the_http_listener_does_not_silently_drop_workload_api_tls() {
    let e = load_err(|c| {
        c.replace("[server]\n", "[server]\nworkload_api_tls = true\n")
            .replace(
                "[identity]\n",
                "[identity]\nworkload_api = \"unix:///tmp/agent.sock\"\n",
            )
    });
    let text = e.to_string();
    assert!(text.contains("server.http_listen"), "{text}");
}
