//! Compromise signals: how each identity behaves against its own history, judged on the audit
//! writer's thread from the decisions it records (never on the request path). Four rules, each
//! with its parameters in `[signals]`:
//!
//! - **new access**: an (identity, action, resource type) never seen before: relative to a
//!   reviewed baseline (`tollgate report --baseline`) when one is configured; otherwise
//!   relative to what the identity did since start, after a learning period in which pairs are
//!   learned silently.
//! - **volume spike**: in the current 10-second window, more calls than both a floor and a
//!   multiple of the identity's usual rate (an exponentially weighted average over its past
//!   windows, once it has enough history).
//! - **denial burst**: at least so many denials within one 10-second window.
//! - **credential expiry**: the certificate an identity presents expires within a warning
//!   period (it was not rotated: tokens are used to their end, so they are not judged near
//!   expiry), or a credential is valid for longer than a maximum lifetime (long-lived
//!   credentials are a risk of their own).
//!
//! Each fires at most once per identity per window (per credential, for expiry), so a flood
//! makes one finding, not a flood of them. Tracking is bounded: at most `identities_max`
//! identities, the oldest-tracked evicted first (counted).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use crate::inventory::{Baseline, Observation};

/// Width of the counting window, milliseconds.
pub const WINDOW_MS: u64 = 10_000;
/// Weight of the newest window in the usual rate.
const EWMA_ALPHA: f64 = 0.2;
/// Windows of history before a spike can be judged.
const MIN_HISTORY: u32 = 6;
/// Pairs remembered per identity (beyond, new ones are not judged).
const MAX_PAIRS: usize = 1024;
/// Findings kept per identity for `/identities`.
pub const RECENT: usize = 8;

/// The rules' parameters (`[signals]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalSettings {
    /// Off: nothing judged.
    pub enabled: bool,
    /// Identities tracked.
    pub identities_max: usize,
    /// Without a baseline, how long after an identity is first seen its pairs are learned
    /// silently, milliseconds.
    pub learn_ms: u64,
    /// Calls in one window below which no spike is called, whatever the usual rate.
    pub spike_min_calls: u64,
    /// How many times the usual rate a window must reach.
    pub spike_multiplier: u32,
    /// Denials in one window that make a burst.
    pub burst_denials: u64,
    /// Credentials expiring within this are reported, milliseconds (0: never).
    pub expiry_warning_ms: u64,
    /// Credentials valid for longer than this are reported, milliseconds (0: never).
    pub max_lifetime_ms: u64,
}

impl Default for SignalSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            identities_max: 10_000,
            learn_ms: 10 * 60_000,
            spike_min_calls: 100,
            spike_multiplier: 10,
            burst_denials: 20,
            expiry_warning_ms: 5 * 60_000,
            max_lifetime_ms: 0,
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// An (action, resource type) the identity never used before.
    NewAccess,
    /// Far more calls than the identity's usual rate.
    VolumeSpike,
    /// Many denials in a short window.
    DenialBurst,
    /// Credentials about to expire, or valid for too long.
    CredentialExpiry,
}

impl SignalKind {
    /// Every kind, for pre-registered counters.
    pub const ALL: [Self; 4] = [
        Self::NewAccess,
        Self::VolumeSpike,
        Self::DenialBurst,
        Self::CredentialExpiry,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewAccess => "new_access",
            Self::VolumeSpike => "volume_spike",
            Self::DenialBurst => "denial_burst",
            Self::CredentialExpiry => "credential_expiry",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    /// What kind.
    pub kind: SignalKind,
    /// The identity (Cedar principal).
    pub principal: String,
    /// When, Unix milliseconds (the decision's time).
    pub time_ms: u64,
    /// What was seen, for a person.
    pub detail: String,
}

/// Per-identity state.
#[derive(Debug, Default)]
struct Tracked {
    first_ms: u64,
    pairs: HashSet<String, foldhash::fast::RandomState>,
    /// Start of the current window, and its counts.
    window: u64,
    calls: u64,
    denials: u64,
    /// The usual calls per window, and how many windows it has seen.
    usual: f64,
    history: u32,
    spiked: bool,
    burst: bool,
    /// The credential expiry last reported (one finding per credential).
    reported_expiry: Option<i64>,
    recent: VecDeque<Finding>,
}

/// The rules and every tracked identity's state. Not thread-safe: the audit writer owns it.
#[derive(Debug)]
pub struct Signals {
    settings: SignalSettings,
    baseline: Option<HashMap<String, BTreeSet<String>>>,
    tracked: HashMap<String, Tracked, foldhash::fast::RandomState>,
    /// Tracking order, for eviction (entries of evicted identities are skipped lazily).
    order: VecDeque<String>,
    evicted: u64,
}

impl Signals {
    /// Rules with `settings`, judging new access against `baseline` when given.
    pub fn new(settings: SignalSettings, baseline: Option<Baseline>) -> Self {
        Self {
            settings,
            baseline: baseline.map(|b| b.identities.into_iter().collect()),
            tracked: HashMap::default(),
            order: VecDeque::new(),
            evicted: 0,
        }
    }

    /// Identities evicted to stay within `identities_max`.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The recent findings of `principal`, oldest first.
    pub fn recent(&self, principal: &str) -> Vec<Finding> {
        self.tracked
            .get(principal)
            .map(|t| t.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Judges one decision; appends what it sets off to `out`.
    pub fn observe(&mut self, o: &Observation<'_>, out: &mut Vec<Finding>) {
        if !self.settings.enabled {
            return;
        }
        let Some(principal) = o.principal else {
            return;
        };
        let from = out.len();
        if !self.tracked.contains_key(principal) {
            self.track(principal, o.time_ms);
        }
        let Self {
            settings,
            baseline,
            tracked,
            ..
        } = self;
        let empty = BTreeSet::new();
        let baseline = baseline
            .as_ref()
            .map(|b| b.get(principal).unwrap_or(&empty));
        let Some(t) = tracked.get_mut(principal) else {
            return;
        };
        let finding = |kind, detail: String| Finding {
            kind,
            principal: principal.to_owned(),
            time_ms: o.time_ms,
            detail,
        };

        // Windows: close the ones passed, folding their calls into the usual rate.
        let window = o.time_ms / WINDOW_MS;
        if window != t.window {
            if t.calls > 0 || t.history > 0 {
                let idle = window.saturating_sub(t.window).saturating_sub(1).min(64);
                t.usual = EWMA_ALPHA * t.calls as f64 + (1.0 - EWMA_ALPHA) * t.usual;
                for _ in 0..idle {
                    t.usual *= 1.0 - EWMA_ALPHA;
                }
                t.history = t.history.saturating_add(1 + idle as u32);
            }
            t.window = window;
            (t.calls, t.denials, t.spiked, t.burst) = (0, 0, false, false);
        }
        t.calls += 1;
        t.denials += u64::from(!o.allowed);

        if let (Some(action), Some(resource_type)) = (o.action, o.resource_type) {
            let pair = crate::inventory::pair(action, resource_type);
            let known = match &baseline {
                Some(reviewed) => reviewed.contains(&pair),
                None => o.time_ms < t.first_ms.saturating_add(settings.learn_ms),
            };
            if !t.pairs.contains(&pair) && t.pairs.len() < MAX_PAIRS {
                if !known {
                    let against = if baseline.is_some() {
                        "the reviewed baseline"
                    } else {
                        "what it did since it was first seen"
                    };
                    out.push(finding(
                        SignalKind::NewAccess,
                        format!("first `{action}` on `{resource_type}`, new against {against}"),
                    ));
                }
                t.pairs.insert(pair);
            }
        }
        let threshold =
            (f64::from(settings.spike_multiplier) * t.usual).max(settings.spike_min_calls as f64);
        if !t.spiked && t.history >= MIN_HISTORY && t.calls as f64 > threshold {
            t.spiked = true;
            out.push(finding(
                SignalKind::VolumeSpike,
                format!(
                    "{} calls in {} s against a usual {:.1}",
                    t.calls,
                    WINDOW_MS / 1000,
                    t.usual
                ),
            ));
        }
        if !t.burst && t.denials >= settings.burst_denials {
            t.burst = true;
            out.push(finding(
                SignalKind::DenialBurst,
                format!(
                    "{} denials in {} s (latest: {})",
                    t.denials,
                    WINDOW_MS / 1000,
                    o.reason
                ),
            ));
        }
        // A certificate close to its end was not rotated (tokens are used to their end, so
        // only a certificate is judged near expiry); any credential valid for longer than the
        // maximum lifetime is reported, once per credential.
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let now = ms(o.time_ms);
        let detail = match (o.certificate_expires_ms, o.longest_expires_ms) {
            (Some(cert), _)
                if settings.expiry_warning_ms > 0
                    && cert.saturating_sub(now) <= ms(settings.expiry_warning_ms)
                    && t.reported_expiry != Some(cert) =>
            {
                t.reported_expiry = Some(cert);
                Some(format!(
                    "its certificate expires in {} s and was not rotated",
                    cert.saturating_sub(now).max(0) / 1000
                ))
            }
            (_, Some(longest))
                if settings.max_lifetime_ms > 0
                    && longest.saturating_sub(now) > ms(settings.max_lifetime_ms)
                    && t.reported_expiry != Some(longest) =>
            {
                t.reported_expiry = Some(longest);
                Some(format!(
                    "credentials valid for {} s more, over the maximum lifetime of {} s",
                    longest.saturating_sub(now) / 1000,
                    settings.max_lifetime_ms / 1000
                ))
            }
            _ => None,
        };
        if let Some(detail) = detail {
            out.push(finding(SignalKind::CredentialExpiry, detail));
        }
        for found in out.get(from..).unwrap_or_default() {
            if t.recent.len() == RECENT {
                t.recent.pop_front();
            }
            t.recent.push_back(found.clone());
        }
    }

    fn track(&mut self, principal: &str, now_ms: u64) {
        while self.tracked.len() >= self.settings.identities_max.max(1) {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.tracked.remove(&oldest).is_some() {
                self.evicted += 1;
            }
        }
        self.tracked.insert(
            principal.to_owned(),
            Tracked {
                first_ms: now_ms,
                window: now_ms / WINDOW_MS,
                ..Tracked::default()
            },
        );
        self.order.push_back(principal.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_790_000_000_000;

    fn call(time_ms: u64, who: &str, action: &str, allowed: bool) -> Observation<'static> {
        Observation {
            time_ms,
            principal: Some(Box::leak(who.to_owned().into_boxed_str())),
            workload: true,
            allowed,
            reason: if allowed { "allowed" } else { "policy_denied" },
            action: Some(Box::leak(action.to_owned().into_boxed_str())),
            resource_type: Some("Order"),
            ..Default::default()
        }
    }

    fn run(
        signals: &mut Signals,
        calls: impl IntoIterator<Item = Observation<'static>>,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        for o in calls {
            signals.observe(&o, &mut out);
        }
        out
    }

    fn kinds(found: &[Finding]) -> Vec<(SignalKind, u64)> {
        found
            .iter()
            .map(|f| (f.kind, (f.time_ms - T0) / 1000))
            .collect()
    }

    #[test]
    fn new_access_after_learning_and_against_a_baseline() {
        let mut s = Signals::new(SignalSettings::default(), None);
        // Learned in the first ten minutes; a new pair after them fires once.
        let found = run(
            &mut s,
            [
                call(T0, "a", "read", true),
                call(T0 + 60_000, "a", "write", true),
                call(T0 + 700_000, "a", "read", true),
                call(T0 + 700_000, "a", "delete", false),
                call(T0 + 701_000, "a", "delete", false),
            ],
        );
        assert_eq!(kinds(&found), [(SignalKind::NewAccess, 700)]);
        assert!(found[0].detail.contains("`delete` on `Order`"), "{found:?}");

        let baseline = Baseline {
            identities: [("a".to_owned(), ["read Order".to_owned()].into())].into(),
            ..Baseline::default()
        };
        let mut s = Signals::new(SignalSettings::default(), Some(baseline));
        let found = run(
            &mut s,
            [
                call(T0, "a", "read", true),
                call(T0 + 1, "a", "write", true),
                call(T0 + 2, "b", "read", true),
            ],
        );
        assert_eq!(
            found
                .iter()
                .map(|f| (f.principal.as_str(), f.kind))
                .collect::<Vec<_>>(),
            [("a", SignalKind::NewAccess), ("b", SignalKind::NewAccess)],
            "write is not in a's baseline; b has none"
        );
    }

    #[test]
    fn a_spike_needs_history_the_floor_and_the_multiple() {
        let settings = SignalSettings {
            learn_ms: u64::MAX,
            ..SignalSettings::default()
        };
        let mut s = Signals::new(settings, None);
        // A steady 20 calls per window for two minutes: never a spike.
        let steady = (0..12u64)
            .flat_map(|w| (0..20).map(move |i| call(T0 + w * WINDOW_MS + i, "a", "read", true)));
        assert_eq!(run(&mut s, steady), []);
        // 150 in the next window: over the floor (100) but not 10 x 20: nothing.
        let busy = (0..150).map(|i| call(T0 + 12 * WINDOW_MS + i, "a", "read", true));
        assert_eq!(run(&mut s, busy), []);
        // After a quiet window, 400 in one: over 10 x the usual rate (~36) part-way: once.
        let at = 14 * WINDOW_MS;
        let spike = (0..400).map(|i| call(T0 + at + i, "a", "read", true));
        let found = run(&mut s, spike);
        assert_eq!(kinds(&found), [(SignalKind::VolumeSpike, 140)]);
    }

    #[test]
    fn a_denial_burst_fires_once_per_window_and_not_for_spread_denials() {
        let mut s = Signals::new(
            SignalSettings {
                learn_ms: u64::MAX,
                ..SignalSettings::default()
            },
            None,
        );
        // 19 denials a window for five windows: under the bar.
        let spread = (0..5u64)
            .flat_map(|w| (0..19).map(move |i| call(T0 + w * WINDOW_MS + i, "a", "read", false)));
        assert_eq!(run(&mut s, spread), []);
        let burst = (0..60).map(|i| call(T0 + 5 * WINDOW_MS + i, "a", "read", false));
        let found = run(&mut s, burst);
        assert_eq!(kinds(&found), [(SignalKind::DenialBurst, 50)]);
        assert!(found[0].detail.starts_with("20 denials"), "{found:?}");
    }

    #[test]
    fn expiry_and_lifetime_fire_once_per_credential() {
        let settings = SignalSettings {
            learn_ms: u64::MAX,
            max_lifetime_ms: 24 * 3_600_000,
            ..SignalSettings::default()
        };
        let mut s = Signals::new(settings, None);
        let with = |t: u64, who: &str, expires: u64| Observation {
            certificate_expires_ms: Some(i64::try_from(expires).unwrap()),
            longest_expires_ms: Some(i64::try_from(expires).unwrap()),
            ..call(t, who, "read", true)
        };
        let found = run(
            &mut s,
            [
                with(T0, "short", T0 + 7_200_000),             // two hours: fine
                with(T0 + 7_000_000, "short", T0 + 7_200_000), // under five minutes: fires
                with(T0 + 7_100_000, "short", T0 + 7_200_000), // same certificate: quiet
                with(T0, "long", T0 + 30 * 24 * 3_600_000),    // thirty days: too long
                with(T0 + 1, "long", T0 + 30 * 24 * 3_600_000),
            ],
        );
        assert_eq!(
            found
                .iter()
                .map(|f| (f.principal.as_str(), f.kind))
                .collect::<Vec<_>>(),
            [
                ("short", SignalKind::CredentialExpiry),
                ("long", SignalKind::CredentialExpiry)
            ]
        );
        assert_eq!(s.recent("short").len(), 1);
    }

    #[test]
    fn tracking_stays_bounded_under_a_flood_of_identities() {
        let mut s = Signals::new(
            SignalSettings {
                identities_max: 100,
                ..SignalSettings::default()
            },
            None,
        );
        let flood = (0..10_000u64).map(|i| call(T0 + i, &format!("id-{i}"), "read", true));
        run(&mut s, flood);
        assert_eq!(s.tracked.len(), 100);
        assert_eq!(s.evicted(), 9_900);
        assert!(s.order.len() <= 100 + 1);
    }
}
