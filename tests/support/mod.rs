//! Test support: PKI, token issuer, and a real server.
#![allow(
    dead_code,
    reason = "each test module uses a different part of the support code"
)]

pub mod envoy;
pub mod jwt;
pub mod pki;
pub mod server;

use jwt::TokenIssuer;
use pki::Ca;
use server::{Options, TestServer};

/// A CA, an issuer, and a server trusting both.
pub struct World {
    pub ca: Ca,
    pub issuer: TokenIssuer,
    pub server: TestServer,
}

impl World {
    pub async fn new() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        let ca = Ca::new("Test Root CA");
        let issuer = TokenIssuer::new();
        let server = TestServer::start(&ca, &issuer, options).await;
        Self { ca, issuer, server }
    }
}
