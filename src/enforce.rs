//! Signal enforcement on the request path, off by default and per signal (`[signals]
//! new_access = "deny"`, `volume_spike = "deny"`): a reviewed baseline as an allow-list, and a
//! runaway identity shed for the rest of the window its spike was seen in.
//!
//! The audit writer judges the signals (`signals`); this is the little state requests read:
//! the reviewed pairs (fixed at start), and the identities shed (written by the writer when a
//! spike fires, read by every request with one atomic load while nobody is shed).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::inventory::{Baseline, spell_pair};

/// What requests are denied for, beyond the policies.
#[derive(Debug, Default)]
pub struct Enforcement {
    /// `new_access = "deny"`: each identity's reviewed pairs (`"<action> <resource type>"`).
    reviewed: Option<HashMap<String, BTreeSet<String>>>,
    /// `volume_spike = "deny"`: identities shed, until when (Unix milliseconds).
    shed: Option<Shed>,
}

#[derive(Debug, Default)]
struct Shed {
    /// The latest moment anyone is shed until (Unix milliseconds): past it, the request path
    /// looks no further.
    latest_until: AtomicU64,
    until: Mutex<HashMap<String, u64>>,
}

impl Enforcement {
    /// Enforcement with the reviewed `baseline` as an allow-list (when given), and shedding of
    /// spiking identities when `shed_spikes`.
    pub fn new(baseline: Option<&Baseline>, shed_spikes: bool) -> Self {
        Self {
            reviewed: baseline.map(|b| b.identities.clone().into_iter().collect()),
            shed: shed_spikes.then(Shed::default),
        }
    }

    /// Whether anything is enforced.
    pub fn is_active(&self) -> bool {
        self.reviewed.is_some() || self.shed.is_some()
    }

    /// Whether `principal` may ask for `action` on `resource_type` under the reviewed
    /// baseline (always, without one). No allocation: the pair is spelled in a reused buffer.
    pub fn reviewed(&self, principal: &str, action: &str, resource_type: &str) -> bool {
        let Some(reviewed) = &self.reviewed else {
            return true;
        };
        let Some(pairs) = reviewed.get(principal) else {
            return false;
        };
        thread_local! {
            static PAIR: RefCell<String> = const { RefCell::new(String::new()) };
        }
        let spell = |pair: &mut String| pairs.contains(spell_pair(pair, action, resource_type));
        // A thread being torn down has no buffer left: spell the pair afresh.
        PAIR.try_with(|pair| pair.try_borrow_mut().map(|mut p| spell(&mut p)).ok())
            .ok()
            .flatten()
            .unwrap_or_else(|| spell(&mut String::new()))
    }

    /// Whether `principal` is shed at `now_ms`.
    pub fn is_shed(&self, principal: &str, now_ms: u64) -> bool {
        let Some(shed) = &self.shed else {
            return false;
        };
        if now_ms >= shed.latest_until.load(Ordering::Relaxed) {
            return false;
        }
        shed.lock()
            .get(principal)
            .is_some_and(|&until| now_ms < until)
    }

    /// Sheds `principal` until `until_ms` (when shedding is on); drops entries past their
    /// time. Called by the audit writer when a spike fires.
    pub fn shed(&self, principal: &str, now_ms: u64, until_ms: u64) {
        let Some(shed) = &self.shed else {
            return;
        };
        let mut until = shed.lock();
        until.retain(|_, &mut u| u > now_ms);
        until.insert(principal.to_owned(), until_ms);
        shed.latest_until.fetch_max(until_ms, Ordering::Relaxed);
    }

    /// Whether [`Self::is_shed`] at `now_ms` looks past the atomic into the table.
    pub fn takes_lock(&self, now_ms: u64) -> bool {
        self.shed
            .as_ref()
            .is_some_and(|s| now_ms < s.latest_until.load(Ordering::Relaxed))
    }

    /// Whether spiking identities are shed.
    pub fn sheds(&self) -> bool {
        self.shed.is_some()
    }
}

impl Shed {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_allows_its_pairs_and_nothing_else() {
        let baseline = Baseline {
            identities: [("a".to_owned(), ["orders:read Order".to_owned()].into())].into(),
            ..Baseline::default()
        };
        let e = Enforcement::new(Some(&baseline), false);
        assert!(e.reviewed("a", "orders:read", "Order"));
        assert!(!e.reviewed("a", "orders:write", "Order"));
        assert!(!e.reviewed("a", "orders:read", "Report"));
        assert!(!e.reviewed("b", "orders:read", "Order"));
        assert!(Enforcement::default().reviewed("b", "x", "y"));
    }

    #[test]
    fn a_shed_identity_is_shed_until_its_time() {
        let e = Enforcement::new(None, true);
        assert!(!e.is_shed("a", 0));
        e.shed("a", 100, 200);
        assert!(e.is_shed("a", 150) && !e.is_shed("b", 150));
        assert!(!e.is_shed("a", 200));
        e.shed("b", 300, 400);
        assert!(!e.is_shed("a", 150), "a's entry was dropped when past");
        let off = Enforcement::default();
        off.shed("a", 0, 100);
        assert!(!off.is_shed("a", 50));
    }

    /// Review finding: the count of shed identities never fell back to zero, so once anyone
    /// had been shed every request took the lock for the life of the process.
    #[test]
    fn once_every_shed_has_expired_requests_take_no_lock() {
        let e = Enforcement::new(None, true);
        e.shed("a", 100, 200);
        assert!(e.takes_lock(150));
        assert!(!e.is_shed("a", 300));
        assert!(!e.takes_lock(300));
    }
}
