//! `ip("…")` context values without Cedar's per-call parse of the name `ip`.
//!
//! `RestrictedExpression::new_ip` parses the extension's name with Cedar's full grammar on every
//! call: about a fifth of a whole Cedar decision on this project's benchmarks. Source addresses
//! repeat (they are the mesh's workloads and proxies), so a bounded memo turns that into a
//! lookup and a clone of a small expression.

use std::net::IpAddr;
use std::sync::LazyLock;

use cedar_policy::RestrictedExpression;
use dashmap::DashMap;

/// Most addresses remembered; past it the memo starts over (a cost saving, never a correctness
/// concern, so the simplest bound will do).
const MAX_ENTRIES: usize = 4096;

static MEMO: LazyLock<DashMap<IpAddr, RestrictedExpression, foldhash::fast::RandomState>> =
    LazyLock::new(|| DashMap::with_hasher(foldhash::fast::RandomState::default()));

/// The Cedar expression `ip("<ip>")`.
pub(super) fn ip_expression(ip: IpAddr) -> RestrictedExpression {
    if let Some(hit) = MEMO.get(&ip) {
        return hit.clone();
    }
    let expression = RestrictedExpression::new_ip(ip.to_string());
    if MEMO.len() >= MAX_ENTRIES {
        MEMO.clear();
    }
    MEMO.insert(ip, expression.clone());
    expression
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_expression_as_cedar_builds() {
        for ip in ["10.0.0.1", "::1", "2001:db8::7"] {
            let ip: IpAddr = ip.parse().unwrap();
            let fresh = format!("{:?}", RestrictedExpression::new_ip(ip.to_string()));
            assert_eq!(format!("{:?}", ip_expression(ip)), fresh, "first call");
            assert_eq!(format!("{:?}", ip_expression(ip)), fresh, "memoised");
        }
    }

    #[test]
    fn stays_bounded() {
        for n in 0..(MAX_ENTRIES as u32 + 100) {
            let _ = ip_expression(IpAddr::from((0x0a00_0000 + n).to_be_bytes()));
            assert!(MEMO.len() <= MAX_ENTRIES);
        }
    }
}
