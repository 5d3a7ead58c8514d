//! Overload is owned: one limit on Checks in flight for the whole process, a deadline per
//! Check, and every shed and timed-out Check counted, logged and audited with its reason code.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::codegen::http;

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

use crate::support::server::{Options, Req};
use crate::support::{World, eventually};

/// A Check that sends its headers and a gRPC frame header, then never the message: it holds
/// one admission slot until the server's deadline. Returns what keeps the stream open and the
/// server's eventual answer (its `grpc-status`).
async fn stalled_check<IO>(io: IO) -> (h2::SendStream<Bytes>, tokio::task::JoinHandle<String>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post("http://tollgate/envoy.service.auth.v3.Authorization/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    // Uncompressed, 100 bytes announced; none follow.
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 100]), false)
        .unwrap();
    let answer = tokio::spawn(async move {
        let response = response.await.unwrap();
        let status = response.headers().get("grpc-status").cloned();
        let mut body = response.into_body();
        while body.data().await.is_some() {}
        let trailers = body.trailers().await.ok().flatten();
        status
            .or_else(|| trailers.and_then(|t| t.get("grpc-status").cloned()))
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    });
    (body, answer)
}

fn audit_reasons(w: &World) -> Vec<String> {
    let text = std::fs::read_to_string(w.server.dir.path().join("audit.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| r["status_code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Sends complete Checks over TCP until one is shed (`true`), or until `stalled` has been
/// answered without one being shed (`false`): it was shed itself, or its deadline passed.
async fn shed_while(
    w: &World,
    request: &CheckRequest,
    stalled: &tokio::task::JoinHandle<String>,
) -> bool {
    while !stalled.is_finished() {
        match w.server.client.clone().check(request.clone()).await {
            Err(status) if status.code() == tonic::Code::Unavailable => return true,
            // Allowed while the stalled Check is still on its way in.
            other => assert!(other.is_ok(), "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_limit_for_every_listener_and_each_shed_and_timeout_is_recorded() {
    let w = World::with(Options {
        server_extra: "unix_socket = \"tollgate.sock\"\nmax_concurrent_requests = 1\n\
                       request_timeout_ms = 1500"
            .into(),
        extra: "[audit]\nfile = \"audit.log\"\n".into(),
        ..Options::default()
    })
    .await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let request = Req::get("/orders/1").cert(&cert.pem).token(&token).build();
    // Warm first: a cold Check (chain and signature, slow in a debug build on a busy machine)
    // could outlast the stalled Check's deadline below, and then nothing is ever shed.
    w.server
        .check(request.clone())
        .await
        .assert_allowed(&format!(
            "spiffe://{}/payments",
            crate::support::pki::TRUST_DOMAIN
        ));
    // The only slot is taken over the Unix socket, so a complete Check over TCP is shed: the
    // limit is the process's, not the listener's. A TCP Check can reach the server first and
    // hold the slot as the stalled one arrives; then the stalled one is shed instead, holds
    // nothing, and another is sent (so too if its deadline passes before a TCP Check lands).
    let started = std::time::Instant::now();
    let stalled = loop {
        let socket = tokio::net::UnixStream::connect(w.server.dir.path().join("tollgate.sock"))
            .await
            .unwrap();
        let (held, stalled) = stalled_check(socket).await;
        if shed_while(&w, &request, &stalled).await {
            break (held, stalled);
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never shed");
    };
    let (_held, stalled) = stalled;
    // The stalled Check ends at its deadline, as DEADLINE_EXCEEDED (4).
    let answer = tokio::time::timeout(Duration::from_secs(5), stalled)
        .await
        .expect("the deadline ended the stalled Check")
        .unwrap();
    assert_eq!(answer, "4");
    // Both are in the audit log with their reason codes, and the slot is free again.
    eventually("shed and timeout audited", || {
        let reasons = audit_reasons(&w);
        reasons.iter().any(|r| r == "overloaded") && reasons.iter().any(|r| r == "timeout")
    })
    .await;
    w.server.check(request).await.assert_allowed(&format!(
        "spiffe://{}/payments",
        crate::support::pki::TRUST_DOMAIN
    ));
}
