//! `x-forwarded-client-cert`: never a panic, and a header that parses keeps parsing to the
//! same last element when an older element is prepended (element boundaries cannot shift).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::identity::xfcc::parse_last;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(last) = parse_last(header) {
        let prefixed = format!("By=spiffe://x/older;URI=spiffe://x/older,{header}");
        assert_eq!(parse_last(&prefixed).as_ref(), Ok(&last));
    }
});
