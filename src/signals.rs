//! Compromise signals: how each identity behaves against its own history, judged on the audit
//! writer's thread from the decisions it records (never on the request path). Four rules, each
//! with its parameters in `[signals]`:
//!
//! - **new access**: an (identity, action, resource type) never seen before, or first allowed
//!   after only denials: relative to a reviewed baseline (`tollgate report --baseline`) when
//!   one is configured; otherwise relative to what the identity did since start, after a
//!   learning period in which pairs are learned silently.
//! - **volume spike**: in the current 10-second window, more calls than both a floor and a
//!   multiple of the identity's usual rate (an exponentially weighted average over its past
//!   active windows, once it has enough of them).
//! - **denial burst**: at least so many denials within the last 10 seconds (the current window
//!   plus the previous one weighted by the share of it still inside them). Refused
//!   credentials, which name no identity, are counted together under [`UNVERIFIED`].
//! - **credential expiry**: the certificate an identity presents expires within a warning
//!   period (it was not rotated: tokens are used to their end, so they are not judged near
//!   expiry), or a credential was issued to live longer than a maximum lifetime (long-lived
//!   credentials are a risk of their own).
//!
//! Spikes and bursts fire at most once per identity per window, new access once per pair (and
//! once more on its first allow), expiry once per credential and rule, so a flood makes one
//! finding, not a flood of them. Tracking is bounded: at most `identities_max` identities,
//! evicted by the clock rule (one seen again since the hand last passed keeps its place once
//! more, so busy identities stay and one-off ones go), counted.

use std::collections::{BTreeSet, HashMap, VecDeque};

use std::sync::Arc;

use crate::enforce::Enforcement;
use crate::inventory::{Baseline, Observation};

/// Width of the counting window, milliseconds.
pub const WINDOW_MS: u64 = 10_000;
/// Weight of the newest window in the usual rate.
const EWMA_ALPHA: f64 = 0.2;
/// Windows of history before a spike can be judged.
const MIN_HISTORY: u32 = 6;
/// Pairs remembered per identity (beyond, new ones are not judged).
const MAX_PAIRS: usize = 1024;
/// The identity denials are counted under when the credentials were refused (no principal).
pub const UNVERIFIED: &str = "(unverified)";
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
    /// `new_access = "deny"`: the reviewed baseline is an allow-list on the request path.
    pub deny_new_access: bool,
    /// `volume_spike = "deny"`: a spiking identity is shed for the rest of its window.
    pub shed_spikes: bool,
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
            deny_new_access: false,
            shed_spikes: false,
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
#[derive(Debug, Default, PartialEq)]
struct Tracked {
    first_ms: u64,
    /// Pairs seen, and whether one was ever allowed (its first allowed use is news too).
    pairs: HashMap<String, bool, foldhash::fast::RandomState>,
    /// The current window, and its counts.
    window: u64,
    calls: u64,
    denials: u64,
    /// The previous window's denials, when it was the one just before: a burst across the
    /// boundary is counted as a sliding window would.
    previous_denials: u64,
    /// The previous window reported a burst.
    previous_burst: bool,
    /// The usual calls per active window (quiet windows are not averaged in: a periodic job
    /// is judged against its runs), and how many active windows it has seen.
    usual: f64,
    history: u32,
    spiked: bool,
    burst: bool,
    /// The certificate expiry last reported near its end, and the credential expiry last
    /// reported over the maximum lifetime (one finding per credential and rule).
    reported_near: Option<i64>,
    reported_lifetime: Option<i64>,
    /// Seen since the eviction clock last passed it (second chance).
    referenced: bool,
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
    /// What the request path enforces; a spike sheds its identity here when configured.
    enforcement: Arc<Enforcement>,
    /// Where each record's pair is spelled for lookups.
    scratch: String,
}

impl Signals {
    /// Rules with `settings`, judging new access against `baseline` when given.
    /// With `deny_new_access` the baseline is also the request path's allow-list, and with
    /// `shed_spikes` a spike sheds its identity: see [`Self::enforcement`].
    pub fn new(settings: SignalSettings, baseline: Option<Baseline>) -> Self {
        let enforcement = Enforcement::new(
            baseline.as_ref().filter(|_| settings.deny_new_access),
            settings.shed_spikes,
        );
        Self {
            settings,
            baseline: baseline.map(|b| b.identities.into_iter().collect()),
            tracked: HashMap::default(),
            order: VecDeque::new(),
            evicted: 0,
            enforcement: Arc::new(enforcement),
            scratch: String::new(),
        }
    }

    /// What the request path enforces (shared with the `Authorizer`).
    pub fn enforcement(&self) -> Arc<Enforcement> {
        self.enforcement.clone()
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

    /// Judges `n` decisions alike, `o` (each made at `o.time_ms`): the same state and
    /// findings as judging `o` `n` times. Once the first is judged, the rest only add to the
    /// window's counts unless they could take it over a threshold (a spike, a burst of
    /// denials); then each is judged in turn, so a finding says what it said before.
    pub fn observe_repeated(&mut self, o: &Observation<'_>, n: u64, out: &mut Vec<Finding>) {
        if n == 0 {
            return;
        }
        self.observe(o, out);
        let rest = n - 1;
        if rest == 0 || !self.settings.enabled {
            return;
        }
        let settings = &self.settings;
        if let Some(t) = self.tracked.get_mut(o.principal.unwrap_or(UNVERIFIED)) {
            let threshold = (f64::from(settings.spike_multiplier) * t.usual)
                .max(settings.spike_min_calls as f64);
            let calls = t.calls.saturating_add(rest);
            let no_spike = t.spiked || t.history < MIN_HISTORY || calls as f64 <= threshold;
            let no_burst = o.allowed || t.burst;
            if no_spike && no_burst {
                t.calls = calls;
                if !o.allowed {
                    t.denials = t.denials.saturating_add(rest);
                }
                t.referenced = true;
                return;
            }
        }
        for _ in 0..rest {
            self.observe(o, out);
        }
    }

    /// Judges one decision; appends what it sets off to `out`.
    pub fn observe(&mut self, o: &Observation<'_>, out: &mut Vec<Finding>) {
        if !self.settings.enabled {
            return;
        }
        // Refused credentials name no identity; their denials are counted together, so a
        // flood of forgeries is a burst too.
        let principal = o.principal.unwrap_or(UNVERIFIED);
        let from = out.len();
        let fresh = !self.tracked.contains_key(principal);
        if fresh {
            self.track(principal, o.time_ms);
        }
        let Self {
            settings,
            baseline,
            tracked,
            enforcement,
            scratch,
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

        // Seen again since it was tracked: worth keeping over a one-off.
        t.referenced |= !fresh;
        // Windows: close the one passed, folding its calls into the usual rate. A record from
        // an earlier window (decided before the previous writer round took it in, or a clock
        // step back) counts in the current one rather than resetting it.
        let window = o.time_ms / WINDOW_MS;
        if window > t.window {
            // A window that spiked is not averaged in either: a runaway stays judged against
            // its usual rate, window after window, instead of raising it.
            if t.calls > 0 && !t.spiked {
                t.usual = if t.history == 0 {
                    t.calls as f64
                } else {
                    EWMA_ALPHA * t.calls as f64 + (1.0 - EWMA_ALPHA) * t.usual
                };
                t.history = t.history.saturating_add(1);
            }
            let adjacent = window == t.window + 1;
            t.previous_denials = if adjacent { t.denials } else { 0 };
            t.previous_burst = adjacent && t.burst;
            t.window = window;
            (t.calls, t.denials, t.spiked, t.burst) = (0, 0, false, false);
        }
        t.calls += 1;
        t.denials += u64::from(!o.allowed);

        if let (Some(action), Some(resource_type)) = (o.action, o.resource_type) {
            // Spelled into a reused buffer: a key is allocated only for a pair new to the
            // identity, not for every record.
            let pair = crate::inventory::spell_pair(scratch, action, resource_type);
            let known = match &baseline {
                Some(reviewed) => reviewed.contains(pair),
                None => o.time_ms < t.first_ms.saturating_add(settings.learn_ms),
            };
            let room = t.pairs.len() < MAX_PAIRS;
            let news = match t.pairs.get_mut(pair) {
                Some(allowed_before) => {
                    let first_allowed = o.allowed && !*allowed_before;
                    *allowed_before |= o.allowed;
                    first_allowed.then_some("first allowed")
                }
                None if room => {
                    t.pairs.insert(pair.to_owned(), o.allowed);
                    Some("first")
                }
                None => None,
            };
            if let Some(news) = news
                && !known
            {
                let against = if baseline.is_some() {
                    "the reviewed baseline"
                } else {
                    "what it did since it was first seen"
                };
                out.push(finding(
                    SignalKind::NewAccess,
                    format!("{news} `{action}` on `{resource_type}`, new against {against}"),
                ));
            }
        }
        let threshold =
            (f64::from(settings.spike_multiplier) * t.usual).max(settings.spike_min_calls as f64);
        if !t.spiked && t.history >= MIN_HISTORY && t.calls as f64 > threshold {
            t.spiked = true;
            // Shed for the rest of this window; the next window judges it afresh.
            enforcement.shed(
                principal,
                o.time_ms,
                (t.window + 1).saturating_mul(WINDOW_MS),
            );
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
        // Denials in the last 10 s, the previous window weighted by how much of it is still
        // within them (a sliding window, approximated).
        let elapsed = o.time_ms % WINDOW_MS;
        let recent_denials =
            t.denials + t.previous_denials * WINDOW_MS.saturating_sub(elapsed + 1) / WINDOW_MS;
        // A burst the previous window already reported fires again only on this window's own
        // denials.
        let fresh = !t.previous_burst || t.denials >= settings.burst_denials;
        if !o.allowed && !t.burst && fresh && recent_denials >= settings.burst_denials {
            t.burst = true;
            out.push(finding(
                SignalKind::DenialBurst,
                format!(
                    "{recent_denials} denials in {} s (latest: {})",
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
        if let Some(cert) = o.certificate_expires_ms
            && settings.expiry_warning_ms > 0
            && cert.saturating_sub(now) <= ms(settings.expiry_warning_ms)
            && t.reported_near != Some(cert)
        {
            t.reported_near = Some(cert);
            out.push(finding(
                SignalKind::CredentialExpiry,
                format!(
                    "its certificate expires in {} s and was not rotated",
                    cert.saturating_sub(now).max(0) / 1000
                ),
            ));
        }
        // The lifetime a credential was issued with (`exp` - `iat`, `notAfter` - `notBefore`),
        // or, where it does not say when it was issued, at least the time it has left.
        if let Some(longest) = o.longest_expires_ms
            && settings.max_lifetime_ms > 0
            && t.reported_lifetime != Some(longest)
        {
            let lifetime = o
                .longest_lifetime_ms
                .unwrap_or(0)
                .max(longest.saturating_sub(now));
            if lifetime > ms(settings.max_lifetime_ms) {
                t.reported_lifetime = Some(longest);
                out.push(finding(
                    SignalKind::CredentialExpiry,
                    format!(
                        "credentials issued to live {} s, over the maximum lifetime of {} s",
                        lifetime / 1000,
                        settings.max_lifetime_ms / 1000
                    ),
                ));
            }
        }
        for found in out.get(from..).unwrap_or_default() {
            if t.recent.len() == RECENT {
                t.recent.pop_front();
            }
            t.recent.push_back(found.clone());
        }
    }

    /// Starts tracking `principal`, evicting by the clock (second-chance) rule when full: an
    /// identity seen since the hand last passed it is passed over once more, so the busy ones
    /// stay and the one-off ones go.
    fn track(&mut self, principal: &str, now_ms: u64) {
        let mut passes = 0;
        while self.tracked.len() >= self.settings.identities_max.max(1) {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            match self.tracked.get_mut(&oldest) {
                // Each tracked identity is passed over at most once per full turn.
                Some(t) if t.referenced && passes < self.order.len() + 1 => {
                    t.referenced = false;
                    passes += 1;
                    self.order.push_back(oldest);
                }
                Some(_) => {
                    self.tracked.remove(&oldest);
                    self.evicted += 1;
                }
                None => {}
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

    /// Rules with learning off (every pair already known), `edit` applied to the defaults.
    fn judging(edit: impl FnOnce(&mut SignalSettings)) -> Signals {
        let mut settings = SignalSettings {
            learn_ms: u64::MAX,
            ..SignalSettings::default()
        };
        edit(&mut settings);
        Signals::new(settings, None)
    }

    /// `per` allowed calls of `a` in each of the first `windows` windows: a steady history.
    fn steady(s: &mut Signals, windows: u64, per: u64) -> Vec<Finding> {
        let calls = (0..windows)
            .flat_map(|w| (0..per).map(move |i| call(T0 + w * WINDOW_MS + i, "a", "read", true)));
        run(s, calls)
    }

    /// Rules judging new access against a baseline in which `a` reads `Order`s.
    fn reviewed_reads() -> Signals {
        let baseline = Baseline {
            identities: [("a".to_owned(), ["read Order".to_owned()].into())].into(),
            ..Baseline::default()
        };
        Signals::new(SignalSettings::default(), Some(baseline))
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

        let mut s = reviewed_reads();
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
        // After a quiet window (not averaged in), 600 in one: over 10 x the usual rate (46)
        // part-way: once.
        let at = 14 * WINDOW_MS;
        let spike = (0..600).map(|i| call(T0 + at + i, "a", "read", true));
        let found = run(&mut s, spike);
        assert_eq!(kinds(&found), [(SignalKind::VolumeSpike, 140)]);
    }

    #[test]
    fn a_denial_burst_fires_once_per_window_and_not_for_spread_denials() {
        let mut s = judging(|_| {});
        // 15 denials a window, spread over it, for five windows: under the bar however the
        // last 10 s are cut.
        let spread = (0..5u64).flat_map(|w| {
            (0..15).map(move |i| call(T0 + w * WINDOW_MS + i * 600, "a", "read", false))
        });
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

    /// Review finding: the two expiry rules shared one memory, so a certificate near its end
    /// and a long-lived token fired on every call, alternately.
    #[test]
    fn near_expiry_and_lifetime_are_remembered_apart() {
        let settings = SignalSettings {
            learn_ms: u64::MAX,
            max_lifetime_ms: 3_600_000,
            ..SignalSettings::default()
        };
        let mut s = Signals::new(settings, None);
        let with = |t: u64| Observation {
            certificate_expires_ms: Some(i64::try_from(T0 + 100_000).unwrap()),
            longest_expires_ms: Some(i64::try_from(T0 + 48 * 3_600_000).unwrap()),
            ..call(t, "a", "read", true)
        };
        let found = run(&mut s, [with(T0), with(T0 + 1), with(T0 + 2), with(T0 + 3)]);
        assert_eq!(found.len(), 2, "{found:?}");
    }

    /// Review finding: a record arriving late (from before the current window) reset the
    /// window, losing its counts.
    #[test]
    fn a_late_record_does_not_reset_the_window() {
        let mut s = judging(|_| {});
        let at = |ms: u64| call(T0 + ms, "a", "read", false);
        let calls = (0..15)
            .map(|_| at(10_001))
            .chain([at(9_999)])
            .chain((0..10).map(|_| at(10_002)));
        let found = run(&mut s, calls);
        assert_eq!(kinds(&found), [(SignalKind::DenialBurst, 10)]);
    }

    /// Review finding: denials straddling a window boundary were split, so 38 denials in a
    /// fraction of a second never made a burst.
    #[test]
    fn a_burst_across_a_window_boundary_is_seen() {
        let mut s = judging(|_| {});
        let calls = (0..19)
            .map(|i| call(T0 + 9_980 + i, "a", "read", false))
            .chain((0..19).map(|i| call(T0 + 10_000 + i, "a", "read", false)));
        let found = run(&mut s, calls);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, SignalKind::DenialBurst);
    }

    /// Review finding: idle windows decayed the usual rate, so a periodic job was a "spike"
    /// every run; and the rate started at zero, a quarter low after six windows.
    #[test]
    fn periodic_and_steady_traffic_are_not_spikes() {
        let settings = SignalSettings {
            learn_ms: u64::MAX,
            ..SignalSettings::default()
        };
        let mut s = Signals::new(settings, None);
        // 150 calls every two minutes, ten times.
        let periodic = (0..10u64).flat_map(|r| {
            (0..150).map(move |i| call(T0 + r * 12 * WINDOW_MS + i, "job", "read", true))
        });
        assert_eq!(run(&mut s, periodic), []);
        let mut s = Signals::new(
            SignalSettings {
                learn_ms: u64::MAX,
                spike_multiplier: 2,
                spike_min_calls: 1,
                ..SignalSettings::default()
            },
            None,
        );
        let steady = (0..6u64)
            .flat_map(|w| (0..100).map(move |i| call(T0 + w * WINDOW_MS + i, "a", "read", true)))
            .chain((0..160).map(|i| call(T0 + 6 * WINDOW_MS + i, "a", "read", true)));
        assert_eq!(run(&mut s, steady), []);
    }

    /// Review finding: eviction was first in, first out, so a busy identity was evicted for
    /// newcomers and learned afresh (a blind spot for new access).
    #[test]
    fn a_busy_identity_is_not_evicted_for_newcomers() {
        let mut s = Signals::new(
            SignalSettings {
                identities_max: 2,
                ..SignalSettings::default()
            },
            None,
        );
        let hot = (0..700u64).map(|i| call(T0 + i * 1_000, "hot", "read", true));
        assert_eq!(run(&mut s, hot), []);
        let found = run(
            &mut s,
            [
                call(T0 + 700_000, "a", "read", true),
                call(T0 + 700_500, "hot", "read", true),
                call(T0 + 701_000, "b", "read", true),
                call(T0 + 702_000, "hot", "write", true),
            ],
        );
        assert_eq!(
            found
                .iter()
                .map(|f| (f.principal.as_str(), f.kind))
                .collect::<Vec<_>>(),
            [("hot", SignalKind::NewAccess)]
        );
    }

    /// Review finding: a pair tried and denied was learned, so its first allowed use (a new
    /// grant, or a way around a policy) was silent.
    #[test]
    fn the_first_allowed_use_of_a_denied_pair_is_new_access() {
        let mut s = reviewed_reads();
        let found = run(
            &mut s,
            [
                call(T0, "a", "delete", false),
                call(T0 + 1, "a", "delete", false),
                call(T0 + 2, "a", "delete", true),
                call(T0 + 3, "a", "delete", true),
            ],
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[1].detail.contains("allowed"), "{found:?}");
    }

    /// Review finding: refusals of the credentials have no principal and were not counted, so
    /// credential stuffing made no burst.
    #[test]
    fn refused_credentials_make_a_burst_of_unverified_callers() {
        let mut s = Signals::new(SignalSettings::default(), None);
        let refused = (0..25).map(|i| Observation {
            principal: None,
            action: None,
            resource_type: None,
            reason: "token_signature",
            ..call(T0 + i, "x", "read", false)
        });
        let found = run(&mut s, refused);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].principal, UNVERIFIED);
        assert!(found[0].detail.contains("token_signature"), "{found:?}");
    }

    /// With `volume_spike = "deny"`, a spike sheds its identity for the rest of its window.
    #[test]
    fn a_spike_sheds_its_identity_for_the_rest_of_the_window_when_configured() {
        let mut s = judging(|s| s.shed_spikes = true);
        assert_eq!(steady(&mut s, 8, 20), []);
        let e = s.enforcement();
        assert!(!e.is_shed("a", T0 + 8 * WINDOW_MS));
        let spike = (0..300).map(|i| call(T0 + 8 * WINDOW_MS + i, "a", "read", true));
        assert_eq!(kinds(&run(&mut s, spike)), [(SignalKind::VolumeSpike, 80)]);
        assert!(e.is_shed("a", T0 + 8 * WINDOW_MS + 300));
        assert!(!e.is_shed("b", T0 + 8 * WINDOW_MS + 300));
        assert!(
            !e.is_shed("a", T0 + 9 * WINDOW_MS),
            "the next window judges it afresh"
        );
        let reporting = Signals::new(SignalSettings::default(), None).enforcement();
        assert!(!reporting.is_active());
    }

    /// Review finding: the window that spiked was averaged in, so a runaway was shed for one
    /// window and then, its usual rate raised by its own spike, let through.
    #[test]
    fn a_runaway_stays_shed_window_after_window() {
        let mut s = judging(|s| s.shed_spikes = true);
        let e = s.enforcement();
        steady(&mut s, 8, 20);
        for w in 8..12u64 {
            let runaway = (0..300).map(move |i| call(T0 + w * WINDOW_MS + i, "a", "read", true));
            run(&mut s, runaway);
            assert!(e.is_shed("a", T0 + w * WINDOW_MS + 300), "window {w}");
        }
    }

    /// Review finding: a late record (from the window before) crossing the threshold shed
    /// its identity until a moment already past.
    #[test]
    fn a_late_record_that_crosses_the_threshold_sheds_until_the_current_windows_end() {
        let mut s = judging(|s| s.shed_spikes = true);
        let e = s.enforcement();
        steady(&mut s, 8, 20);
        let at = 8 * WINDOW_MS;
        run(
            &mut s,
            (0..200).map(|i| call(T0 + at + i, "a", "read", true)),
        );
        let found = run(&mut s, [call(T0 + at - 5, "a", "read", true)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(e.is_shed("a", T0 + at + 500));
    }

    /// Review finding: a burst that ended on one side of a boundary fired again on the first
    /// denial past it.
    #[test]
    fn one_burst_across_a_boundary_is_one_finding() {
        let mut s = judging(|_| {});
        let calls = (0..20)
            .map(|i| call(T0 + 9_980 + i, "a", "read", false))
            .chain([call(T0 + 10_000, "a", "read", false)]);
        assert_eq!(run(&mut s, calls).len(), 1);
        // A burst that goes on makes one finding per window, on its own denials.
        let more = (0..20).map(|i| call(T0 + 10_001 + i, "a", "read", false));
        assert_eq!(run(&mut s, more).len(), 1);
    }

    /// Review finding: the maximum lifetime was judged on the time left, so a 48-hour token
    /// first seen in its 25th hour (23 hours left) passed a 24-hour maximum.
    #[test]
    fn a_credential_issued_to_live_too_long_is_reported_whatever_is_left() {
        let settings = SignalSettings {
            learn_ms: u64::MAX,
            max_lifetime_ms: 24 * 3_600_000,
            ..SignalSettings::default()
        };
        let mut s = Signals::new(settings, None);
        let hour = 3_600_000i64;
        let now = i64::try_from(T0).unwrap();
        let token = Observation {
            longest_expires_ms: Some(now + 23 * hour),
            longest_lifetime_ms: Some(48 * hour),
            ..call(T0, "a", "read", true)
        };
        let found = run(&mut s, [token]);
        assert_eq!(kinds(&found), [(SignalKind::CredentialExpiry, 0)]);
        assert!(found[0].detail.contains("172800 s"), "{found:?}");
        let fine = Observation {
            longest_expires_ms: Some(now + 23 * hour),
            longest_lifetime_ms: Some(24 * hour),
            ..call(T0, "b", "read", true)
        };
        assert_eq!(run(&mut s, [fine]), []);
    }

    proptest::proptest! {
        /// Judging a run of alike decisions at once leaves the same state, findings and
        /// sheds as judging each: across spikes, denial bursts, new pairs, expiring
        /// certificates, windows passing and identities evicted.
        #[test]
        fn a_run_judged_at_once_is_judged_as_each_of_its_decisions(
            runs in proptest::collection::vec(
                (0..4u64, 0..3usize, 0..3usize, 0..4u8, proptest::bool::ANY, 1..60u64),
                1..80,
            ),
        ) {
            let settings = |s: &mut SignalSettings| {
                s.learn_ms = 15_000;
                s.spike_min_calls = 20;
                s.spike_multiplier = 2;
                s.burst_denials = 6;
                s.identities_max = 2;
                s.expiry_warning_ms = 60_000;
                s.max_lifetime_ms = 100_000;
                s.shed_spikes = true;
            };
            let (mut each, mut at_once) = (judging(settings), judging(settings));
            let (mut found_each, mut found_at_once) = (Vec::new(), Vec::new());
            let mut time_ms = T0;
            for (step, who, action, outcome, certificate, n) in runs {
                // The same millisecond, the next, a few seconds on, or a window or more on.
                time_ms += [0, 1, 3_000, 25_000][step as usize];
                let mut o = call(time_ms, ["a", "b", "c"][who], ["read", "write", "list"][action], outcome > 0);
                if certificate {
                    o.certificate_expires_ms = Some((T0 + 200_000) as i64);
                    o.longest_expires_ms = o.certificate_expires_ms;
                    o.longest_lifetime_ms = Some(150_000);
                }
                for _ in 0..n {
                    each.observe(&o, &mut found_each);
                }
                at_once.observe_repeated(&o, n, &mut found_at_once);
                proptest::prop_assert_eq!(&found_each, &found_at_once);
                proptest::prop_assert!(each.tracked == at_once.tracked, "{:?}\n{:?}", each.tracked, at_once.tracked);
                proptest::prop_assert_eq!(&each.order, &at_once.order);
                proptest::prop_assert_eq!(each.evicted, at_once.evicted);
                for who in ["a", "b", "c"] {
                    proptest::prop_assert_eq!(
                        each.enforcement.is_shed(who, time_ms),
                        at_once.enforcement.is_shed(who, time_ms)
                    );
                }
            }
        }
    }
}
