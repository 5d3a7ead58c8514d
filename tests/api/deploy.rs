//! The Kubernetes, Istio and Docker artefacts in deploy/: parsed, cross-checked against each
//! other and the Envoy configs, and the Tollgate configs they embed loaded for real.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use tollgate::config::{self, Config, ConfigSource};
use tollgate::snapshot::Snapshot;

use crate::support::server::MANIFEST;

fn deploy(path: &str) -> String {
    std::fs::read_to_string(Path::new(MANIFEST).join("deploy").join(path)).unwrap()
}

/// Every document of a multi-document YAML file, as JSON values.
fn documents(path: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(&deploy(path))
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Loads an embedded tollgate.toml with its in-cluster paths mapped onto this repository.
fn load_embedded_config(toml: &str, dir: &Path) -> (Config, Snapshot) {
    let repo = |p: &str| Path::new(MANIFEST).join(p).display().to_string();
    let text = toml
        .replace("/etc/tollgate/policies", &repo("policies"))
        .replace(
            "/var/run/secrets/workload/bundle.pem",
            &repo("deploy/demo/ca.pem"),
        )
        .replace(
            "/etc/tollgate/jwks/jwks.json",
            &repo("deploy/demo/issuer.jwks.json"),
        )
        .replace("/var/run/tollgate/", &format!("{}/", dir.display()));
    let path = dir.join("tollgate.toml");
    std::fs::write(&path, text).unwrap();
    config::load(&ConfigSource::File(path), 1)
        .unwrap_or_else(|e| panic!("embedded config invalid: {e}"))
}

fn mount_path(container: &Value, volume: &str) -> PathBuf {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .map(|m| PathBuf::from(m["mountPath"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{} does not mount {volume}", container["name"]))
}

#[test]
fn kubernetes_deployment_wires_envoy_tollgate_and_the_app_together() {
    let docs = documents("kubernetes/deployment.yaml");
    let config_docs = documents("kubernetes/tollgate-config.yaml");
    let toml = kind(&config_docs, "ConfigMap", "tollgate-config")["data"]["tollgate.toml"]
        .as_str()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = load_embedded_config(toml, dir.path());

    let pod = &kind(&docs, "Deployment", "orders")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let containers = pod["containers"].as_array().unwrap();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["spiffe-helper", "app", "envoy", "tollgate"]);
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let init = pod["initContainers"].as_array().unwrap();
    for c in containers.iter().chain(init) {
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
        assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{}", c["name"]);
        assert!(
            c["resources"]["requests"]["memory"].is_string(),
            "{}",
            c["name"]
        );
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            assert!(
                volumes.contains(&m["name"].as_str().unwrap()),
                "unknown volume {m}"
            );
        }
    }
    let helper = &containers[0];
    let envoy = &containers[2];
    let tollgate = &containers[3];

    // Tollgate reads its config where the ConfigMap is mounted.
    let args: Vec<&str> = tollgate["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_arg = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    assert_eq!(
        Path::new(config_arg),
        mount_path(tollgate, "tollgate-config").join("tollgate.toml")
    );
    assert_eq!(
        Path::new("/etc/tollgate/policies"),
        mount_path(tollgate, "tollgate-policies")
    );

    // Probes hit the admin listener Tollgate actually binds.
    let admin = config.settings.admin_listen.unwrap();
    let admin_port = &tollgate["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap()["containerPort"];
    assert_eq!(admin_port.as_u64(), Some(u64::from(admin.port())));
    assert!(
        admin.ip().is_unspecified(),
        "probes need the admin listener on the pod IP"
    );
    assert_eq!(tollgate["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(tollgate["readinessProbe"]["httpGet"]["path"], "/readyz");

    // Envoy and Tollgate share the socket directory; the socket is where sidecar.yaml looks.
    let socket_dir = mount_path(tollgate, "tollgate-socket");
    assert_eq!(socket_dir, mount_path(envoy, "tollgate-socket"));
    assert!(
        deploy("envoy/sidecar.yaml")
            .contains(&format!("path: {}/tollgate.sock", socket_dir.display()))
    );
    assert_eq!(
        config.settings.unix_socket,
        Some(dir.path().join("tollgate.sock"))
    );

    // The CSI driver provides only the Workload API socket, to spiffe-helper, which writes the
    // SVID and bundle (first as an init container, then on rotation) where Envoy and Tollgate
    // read them.
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        volume("spire-agent-socket")["csi"]["driver"],
        "csi.spiffe.io"
    );
    assert!(volume("workload-svid")["emptyDir"].is_object());
    let helper_conf = kind(&config_docs, "ConfigMap", "spiffe-helper")["data"]["helper.conf"]
        .as_str()
        .unwrap();
    for c in [helper, &init[0]] {
        assert!(helper_conf.contains(&format!(
            "cert_dir = \"{}\"",
            mount_path(c, "workload-svid").display()
        )));
        assert!(helper_conf.contains(&format!(
            "agent_address = \"{}/spire-agent.sock\"",
            mount_path(c, "spire-agent-socket").display()
        )));
    }
    assert!(
        init[0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "-daemon-mode=false")
    );
    for file in ["svid.pem", "svid.key", "bundle.pem"] {
        assert!(helper_conf.contains(&format!("\"{file}\"")), "{file}");
    }
    // Tollgate streams its bundles from the same Workload API socket the CSI driver mounts.
    assert_eq!(
        config
            .settings
            .workload_api
            .as_ref()
            .map(|w| w.endpoint.clone()),
        Some(format!(
            "unix://{}/spire-agent.sock",
            mount_path(tollgate, "spire-agent-socket").display()
        ))
    );
    assert!(
        config.spec.identity.trust_domains.iter().all(|d| matches!(
            d.bundle.as_ref().map(|b| &b.value),
            Some(tollgate::snapshot::source::Document::Streamed(_))
        )),
        "every trust domain's bundle comes from the Workload API"
    );
    assert!(deploy("envoy/sidecar.yaml").contains(&format!(
        "{}/svid.pem",
        mount_path(envoy, "workload-svid").display()
    )));
    assert_eq!(mount_path(envoy, "envoy-config"), Path::new("/etc/envoy"));
}

#[test]
fn istio_registers_tollgate_as_a_custom_authorization_provider() {
    let mesh_docs = documents("istio/mesh-config.yaml");
    let mesh_text = kind(&mesh_docs, "ConfigMap", "istio")["data"]["mesh"]
        .as_str()
        .unwrap();
    let mesh: Value = serde_norway::from_str(mesh_text).unwrap();
    let provider = &mesh["extensionProviders"][0];
    assert_eq!(provider["name"], "tollgate");
    let grpc = &provider["envoyExtAuthzGrpc"];
    assert_eq!(grpc["failOpen"], false);
    // Tollgate sees every spelling of its own headers, so it can strip them.
    let forwarded = grpc["includeRequestHeadersInCheck"].as_array().unwrap();
    for header in ["authorization", "x-tollgate-*", "x_tollgate_*"] {
        assert!(forwarded.iter().any(|h| h == header), "{header}");
    }

    let policy_docs = documents("istio/authorization-policy.yaml");
    let policy = kind(&policy_docs, "AuthorizationPolicy", "orders-tollgate");
    assert_eq!(policy["spec"]["action"], "CUSTOM");
    assert_eq!(policy["spec"]["provider"]["name"], "tollgate");
    assert_eq!(
        kind(&policy_docs, "PeerAuthentication", "orders-strict-mtls")["spec"]["mtls"]["mode"],
        "STRICT"
    );

    let docs = documents("istio/tollgate.yaml");
    // Reachable only through the mesh: injected, STRICT mTLS, mesh identities only.
    assert_eq!(
        kind(&docs, "Namespace", "tollgate-system")["metadata"]["labels"]["istio-injection"],
        "enabled"
    );
    assert_eq!(
        kind(&docs, "PeerAuthentication", "tollgate-strict-mtls")["spec"]["mtls"]["mode"],
        "STRICT"
    );
    let allow = &kind(&docs, "AuthorizationPolicy", "tollgate-mesh-only")["spec"];
    assert_eq!(allow["action"], "ALLOW");
    assert_eq!(
        allow["rules"][0]["from"][0]["source"]["principals"][0],
        "cluster.local/*"
    );
    let service = kind(&docs, "Service", "tollgate");
    let host = format!(
        "{}.{}.svc.cluster.local",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap()
    );
    assert_eq!(grpc["service"], host.as_str());
    assert_eq!(grpc["port"], service["spec"]["ports"][0]["port"]);
    let dir = tempfile::tempdir().unwrap();
    let toml = kind(&docs, "ConfigMap", "tollgate-config")["data"]["tollgate.toml"]
        .as_str()
        .unwrap();
    let (config, snapshot) = load_embedded_config(toml, dir.path());
    assert_eq!(
        snapshot.identity.source,
        tollgate::identity::IdentitySource::EnvoyPrincipal
    );
    assert_eq!(
        grpc["port"].as_u64(),
        Some(u64::from(config.settings.listen.port()))
    );
    // One route table, many destinations: routes apply only to their own hosts.
    let path = tollgate::mapping::path::normalize("/orders/1").unwrap();
    let routes = &snapshot.routes;
    assert!(
        routes
            .resolve("orders.shop.svc.cluster.local", "GET", &path)
            .is_some()
    );
    assert!(routes.resolve("orders:8080", "GET", &path).is_some());
    assert!(
        routes
            .resolve("payments.shop.svc.cluster.local", "GET", &path)
            .is_none()
    );
}

#[test]
fn dockerfile_builds_locked_and_runs_non_root() {
    let dockerfile = deploy("Dockerfile");
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")),
        2
    );
    assert!(dockerfile.contains("cargo build --release --locked --bin tollgate"));
    assert!(dockerfile.contains("USER 65532:65532"));
    assert!(
        dockerfile
            .contains("COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate")
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/tollgate\"]"));
}
