//! Decisions on the example estate: app-only scopes, delegated ownership, quarantine, routes,
//! path normalisation, IP conditions, response headers.

use crate::support::World;
use crate::support::pki::TRUST_DOMAIN;
use crate::support::server::{Options, Req};

fn app(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/{name}")
}

#[tokio::test]
async fn app_only_access_needs_the_scope() {
    let w = World::new().await;
    let cert = w.ca.app("payments");
    let with_scope = w.issuer.app("payments", "orders.read");
    w.server
        .check(
            Req::get("/orders/1001")
                .cert(&cert.pem)
                .token(&with_scope)
                .build(),
        )
        .await
        .assert_allowed(&app("payments"));

    let without = w.issuer.app("payments", "payments.charge");
    let answer = w
        .server
        .check(
            Req::get("/orders/1001")
                .cert(&cert.pem)
                .token(&without)
                .build(),
        )
        .await;
    answer.assert_denied(403, "policy_denied");
    assert!(
        answer.message().contains("orders:read"),
        "{}",
        answer.message()
    );
}

#[tokio::test]
async fn delegated_access_is_limited_to_the_users_own_orders() {
    let w = World::new().await;
    let cert = w.ca.app("web-frontend");
    let alice = w.issuer.delegated("web-frontend", "alice", "orders.read");
    w.server
        .check(
            Req::get("/users/alice/orders/7")
                .cert(&cert.pem)
                .token(&alice)
                .build(),
        )
        .await
        .assert_allowed(&app("web-frontend"));
    w.server
        .check(
            Req::get("/users/bob/orders/7")
                .cert(&cert.pem)
                .token(&alice)
                .build(),
        )
        .await
        .assert_denied(403, "policy_denied");
    // Dot segments are resolved before matching: this is bob's order, not alice's.
    w.server
        .check(
            Req::get("/users/alice/orders/../../bob/orders/7")
                .cert(&cert.pem)
                .token(&alice)
                .build(),
        )
        .await
        .assert_denied(403, "policy_denied");
    // App-only tokens never reach user data through the delegated rule.
    let app_only = w.issuer.app("web-frontend", "orders.read");
    w.server
        .check(
            Req::get("/users/alice/orders/7")
                .cert(&cert.pem)
                .token(&app_only)
                .build(),
        )
        .await
        .assert_denied(403, "policy_denied");
}

#[tokio::test]
async fn both_the_apps_and_the_users_rights_are_required() {
    let w = World::new().await;
    let cert = w.ca.app("web-frontend");
    let customer = w.issuer.delegated("web-frontend", "alice", "orders.write");
    w.server
        .check(
            Req::new("POST", "/orders")
                .cert(&cert.pem)
                .token(&customer)
                .build(),
        )
        .await
        .assert_allowed(&app("web-frontend"));
    let support = w.issuer.delegated("web-frontend", "carol", "orders.write");
    w.server
        .check(
            Req::new("POST", "/orders")
                .cert(&cert.pem)
                .token(&support)
                .build(),
        )
        .await
        .assert_denied(403, "policy_denied");
}

#[tokio::test]
async fn quarantine_forbid_wins_and_is_reported() {
    let w = World::new().await;
    let cert = w.ca.app("legacy-reporting");
    let token = w.issuer.app("legacy-reporting", "orders.read");
    let answer = w
        .server
        .check(Req::get("/orders/1").cert(&cert.pem).token(&token).build())
        .await;
    answer.assert_denied(403, "policy_denied");
    assert_eq!(answer.body["policies"][0], "quarantine-legacy-reporting");
}

#[tokio::test]
async fn ip_range_condition() {
    let w = World::new().await;
    let cert = w.ca.app("nightly-batch");
    let token = w.issuer.app("nightly-batch", "reports.write");
    let req = Req::new("PUT", "/reports/daily")
        .cert(&cert.pem)
        .token(&token);
    w.server
        .check(req.clone().source_ip("10.20.3.4").build())
        .await
        .assert_allowed(&app("nightly-batch"));
    w.server
        .check(req.clone().source_ip("192.168.1.1").build())
        .await
        .assert_denied(403, "policy_denied");
    w.server
        .check(req.build())
        .await
        .assert_denied(403, "policy_denied");
}

#[tokio::test]
async fn unmatched_and_malformed_requests_are_denied() {
    let w = World::new().await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let base =
        |method: &str, path: &str| Req::new(method, path).cert(&cert.pem).token(&token).build();
    let answer = w.server.check(base("GET", "/admin")).await;
    answer.assert_denied(403, "no_route");
    w.server
        .check(base("DELETE", "/orders/1"))
        .await
        .assert_denied(403, "no_route");
    w.server
        .check(base("GET", "/ORDERS/1"))
        .await
        .assert_denied(403, "no_route");
    // `;` is read differently by upstream servers (path parameters): refused, not matched.
    w.server
        .check(base("GET", "/orders;x=1/1"))
        .await
        .assert_denied(400, "malformed_request");
    w.server
        .check(base("GET", "/orders/a%2Fb"))
        .await
        .assert_denied(400, "malformed_request");
    w.server
        .check(base("GET", "/orders/%zz"))
        .await
        .assert_denied(400, "malformed_request");
    w.server
        .check(base("GET", "orders/1"))
        .await
        .assert_denied(400, "malformed_request");
    // The query string never takes part in matching, and duplicate slashes collapse.
    w.server
        .check(base("GET", "//orders//1?x=/admin"))
        .await
        .assert_allowed(&app("payments"));
}

#[tokio::test]
async fn allowed_responses_overwrite_and_strip_spoofed_headers() {
    let w = World::new().await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let answer = w
        .server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .token(&token)
                .header(
                    "x-tollgate-principal",
                    "spiffe://demo.tollgate.dev/platform-ops",
                )
                .header("x-tollgate-admin", "yes")
                .build(),
        )
        .await;
    answer.assert_allowed(&app("payments"));
    assert_eq!(answer.headers_to_remove, ["x-tollgate-admin"]);
}

#[tokio::test]
async fn repeated_calls_are_served_from_cache_with_the_same_answer() {
    let w = World::new().await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let req = Req::get("/orders/1").cert(&cert.pem).token(&token).build();
    let first = w.server.check(req.clone()).await;
    let second = w.server.check(req).await;
    first.assert_allowed(&app("payments"));
    second.assert_allowed(&app("payments"));
    assert_ne!(
        first.headers["x-tollgate-decision-id"],
        second.headers["x-tollgate-decision-id"]
    );
}

/// Finding: IPv4-mapped IPv6 sources were not normalised, so an IP condition could be dodged
/// on a dual-stack listener.
#[tokio::test]
async fn ipv4_mapped_sources_are_their_ipv4_address() {
    let w = World::new().await;
    let cert = w.ca.app("nightly-batch");
    let token = w.issuer.app("nightly-batch", "reports.write");
    let req = Req::new("PUT", "/reports/daily")
        .cert(&cert.pem)
        .token(&token);
    w.server
        .check(req.clone().source_ip("::ffff:10.20.3.4").build())
        .await
        .assert_allowed(&app("nightly-batch"));
    w.server
        .check(req.source_ip("::ffff:192.168.1.1").build())
        .await
        .assert_denied(403, "policy_denied");
}

/// Finding: a client could send `x_tollgate_principal`, which WSGI, Rack and PHP read as the
/// real principal header; every spelling of Tollgate's headers is removed.
#[tokio::test]
async fn every_spelling_of_tollgates_headers_is_stripped() {
    let w = World::new().await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let answer = w
        .server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .token(&token)
                .header(
                    "x_tollgate_principal",
                    "spiffe://demo.tollgate.dev/platform-ops",
                )
                .header("x-tollgate_decision-id", "forged")
                .build(),
        )
        .await;
    answer.assert_allowed(&app("payments"));
    let mut removed = answer.headers_to_remove.clone();
    removed.sort();
    assert_eq!(removed, ["x-tollgate_decision-id", "x_tollgate_principal"]);
}

/// Finding: the folding was one-way (a client's `_` matched a configured `-`), so with
/// `principal_header = "x_user"` a client's `x-user`, the same CGI variable, was passed on.
#[tokio::test]
async fn a_configured_header_with_underscores_is_stripped_in_every_spelling() {
    let w = World::with(Options {
        extra: "[response]\nprincipal_header = \"x_user\"\n".into(),
        ..Options::default()
    })
    .await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let answer = w
        .server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .token(&token)
                .header("x-user", "spiffe://demo.tollgate.dev/platform-ops")
                .build(),
        )
        .await;
    assert_eq!(answer.headers["x_user"], app("payments"));
    assert_eq!(answer.headers_to_remove, ["x-user"]);
}

/// Finding: `/orders/..;/admin` was allowed as `orders:read` on `Order::"..;"`.
#[tokio::test]
async fn dot_segments_behind_parameters_are_malformed() {
    let w = World::new().await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    for path in [
        "/orders/..;",
        "/orders/%2e%2e;",
        "/orders/1;jsessionid=x",
        "/orders/%252e%252e",
    ] {
        w.server
            .check(Req::get(path).cert(&cert.pem).token(&token).build())
            .await
            .assert_denied(400, "malformed_request");
    }
}
