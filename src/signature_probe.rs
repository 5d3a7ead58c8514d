//! One ES256 signature over a token-sized message, verified again on every call with a key
//! parsed once, as Tollgate keeps an issuer's keys: what a signature check costs, with nothing
//! else around it.
//!
//! `tollgate-floor --verify-es256` pays it on every Check, the floor of a server whose every
//! request checks a signature. A build with the `signature-probe` feature pays it at the top of
//! every gRPC Check, before deciding as usual: Tollgate's allowed path plus one signature check,
//! in Tollgate's own process, which is what a distinct forged token is judged against
//! (`benches/forgeries.py`). The probe changes no decision.

#[cfg(any(feature = "signature-probe", test))]
use std::cell::Cell;
#[cfg(any(feature = "signature-probe", test))]
use std::sync::OnceLock;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    ParsedPublicKey,
};

/// A key and a signature it made, over a message the size of a token's signed part.
#[derive(Debug)]
pub struct Es256 {
    public_key: ParsedPublicKey,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Es256 {
    /// Makes a key and signs the message once.
    pub fn new() -> Result<Self, String> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|e| format!("cannot make an ES256 key: {e}"))?;
        // About the signed part of the demo's bearer token.
        let message = vec![b'x'; 400];
        let signature = key
            .sign(&aws_lc_rs::rand::SystemRandom::new(), &message)
            .map_err(|e| format!("cannot sign: {e}"))?;
        let public_key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref())
            .map_err(|e| format!("cannot parse the ES256 key: {e}"))?;
        Ok(Self {
            public_key,
            message,
            signature: signature.as_ref().to_vec(),
        })
    }

    /// Verifies the signature; true when it holds, as it always should.
    pub fn verify(&self) -> bool {
        self.public_key
            .verify_sig(&self.message, &self.signature)
            .is_ok()
    }
}

// The probe itself exists only where it runs: in a `signature-probe` build, and in tests.
#[cfg(any(feature = "signature-probe", test))]
thread_local! {
    /// Verifications [`verify_once`] made on this thread: how a test sees that a probe build
    /// probes (per thread, so that other tests running at once do not count).
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

#[cfg(any(feature = "signature-probe", test))]
/// The probe of a `signature-probe` build: one verification, with a key made on first use
/// (`tollgate serve` makes it at start, and logs whether it verifies). False when the key
/// could not be made or the signature did not hold; a Check is decided the same either way.
pub fn verify_once() -> bool {
    static PROBE: OnceLock<Option<Es256>> = OnceLock::new();
    CALLS.with(|calls| calls.set(calls.get() + 1));
    PROBE
        .get_or_init(|| Es256::new().ok())
        .as_ref()
        .is_some_and(Es256::verify)
}

#[cfg(any(feature = "signature-probe", test))]
/// How many times [`verify_once`] ran on this thread.
pub fn calls() -> u64 {
    CALLS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_verifies_its_own_signature() {
        let before = super::calls();
        assert!(super::verify_once());
        assert!(super::verify_once());
        assert_eq!(super::calls(), before + 2);
    }
}
