//! The revocation file: never a panic; an error always names a line inside the file; a file
//! that parses checks any caller without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::identity::revocation::Revocations;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Revocations::parse("revoked.toml", text) {
        Ok(revocations) => {
            let _ = revocations.check(None, None);
        }
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.lines().count().max(1) + 1, "{e}");
        }
    }
});
