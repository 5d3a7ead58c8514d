//! The request path's two clocks, chosen for what each reading is used for.
//!
//! - **Wall time** decides validity windows only: a token's `exp`/`nbf`/`iat`, a certificate's
//!   validity, a memo entry's lifetime, all in whole seconds. It is read from the kernel's
//!   coarse real-time clock (the time of the last scheduler tick, at most a few milliseconds
//!   old) for a few nanoseconds, where the precise clock costs tens on every request. A
//!   credential is therefore honoured at most one tick past its expiry second.
//! - **Elapsed time** (the latency histogram, a record's `elapsed_us`, budgets) comes from
//!   the CPU's timestamp counter through `quanta` (calibrated against the monotonic clock)
//!   when the kernel itself keeps time by that counter, and from the monotonic clock
//!   otherwise. quanta asks only the CPU whether its counter is invariant; a kernel that has
//!   found the counter unstable (its clocksource watchdog on a VM, unsynchronised sockets)
//!   has moved to another clocksource, and then so does Tollgate. The choice is made once, at
//!   start.
//!
//! Everything off the request path (fetch schedules, the audit writer's wall stamps) keeps
//! `std::time`.

use std::ops::Add;
use std::sync::OnceLock;
use std::time::Duration;

use rustls_pki_types::UnixTime;

/// A point in time for measuring what a request took: nanoseconds on the process's measuring
/// clock (see the module's note). Later points compare greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Started(u64);

impl Started {
    /// The time since this point.
    #[inline]
    pub fn elapsed(self) -> Duration {
        started().duration_since(self)
    }

    /// The time from `earlier` to this point; zero if `earlier` is not earlier.
    #[inline]
    pub fn duration_since(self, earlier: Started) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Started {
    type Output = Started;

    fn add(self, later: Duration) -> Started {
        let later = u64::try_from(later.as_nanos()).unwrap_or(u64::MAX);
        Started(self.0.saturating_add(later))
    }
}

/// What elapsed times are read from.
enum Source {
    /// The timestamp counter, from its reading at start.
    Counter { clock: quanta::Clock, origin: u64 },
    /// The monotonic clock, from its reading at start.
    Monotonic(std::time::Instant),
}

static SOURCE: OnceLock<Source> = OnceLock::new();

fn source() -> &'static Source {
    SOURCE.get_or_init(|| {
        if kernel_keeps_time_by_the_counter() {
            let clock = quanta::Clock::new();
            let origin = clock.raw();
            Source::Counter { clock, origin }
        } else {
            Source::Monotonic(std::time::Instant::now())
        }
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn kernel_keeps_time_by_the_counter() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|name| counter_clocksource(&name))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn kernel_keeps_time_by_the_counter() -> bool {
    false
}

/// Whether the kernel's clocksource `name` is the counter quanta reads: the x86 TSC, or the
/// Arm generic timer.
fn counter_clocksource(name: &str) -> bool {
    matches!(name.trim(), "tsc" | "arch_sys_counter")
}

/// Now, for measuring: see [`Started`].
#[inline]
pub fn started() -> Started {
    match source() {
        Source::Counter { clock, origin } => Started(clock.delta_as_nanos(*origin, clock.raw())),
        Source::Monotonic(origin) => {
            Started(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
        }
    }
}

/// Chooses and calibrates the measuring clock (calibration takes milliseconds, once) so that
/// the first request does not pay for it; says which clock it chose.
pub fn prepare() {
    let _ = started();
    let _ = wall();
    let chosen = match source() {
        Source::Counter { .. } => {
            "the timestamp counter (the kernel's clocksource; quanta falls back to the \
             monotonic clock on a CPU without an invariant one)"
        }
        Source::Monotonic(_) => "the monotonic clock",
    };
    tracing::debug!(clock = chosen, "measuring request times by {chosen}");
}

/// The wall clock to the second, read cheaply (see the module's note).
#[inline]
pub fn wall() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(coarse_unix_seconds()))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn coarse_unix_seconds() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    unix_seconds(now.tv_sec)
}

/// A reading of the wall clock in seconds as validity checks take it. A clock before 1970 is
/// broken, and reads as the end of year 9999 (past every certificate's and token's expiry,
/// yet far from overflowing any arithmetic on it): every credential is refused as expired
/// until the clock is set right.
fn unix_seconds(tv_sec: i64) -> u64 {
    const BROKEN: u64 = 253_402_300_800;
    u64::try_from(tv_sec).unwrap_or(BROKEN)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn coarse_unix_seconds() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or_else(|_| unix_seconds(-1), |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_wall_clock_agrees_with_the_precise_one_to_the_tick() {
        // The coarse clock lags by at most a tick (≤ 10 ms at HZ=100), so the two agree to a
        // second except across a second's boundary, where the coarse one may be one behind.
        for _ in 0..1_000 {
            let before = UnixTime::now().as_secs();
            let coarse = wall().as_secs();
            let after = UnixTime::now().as_secs();
            assert!(
                coarse + 1 >= before && coarse <= after,
                "coarse {coarse} outside [{before} - 1, {after}]"
            );
        }
    }

    #[test]
    fn the_counter_is_used_only_when_the_kernel_keeps_time_by_it() {
        assert!(counter_clocksource("tsc\n"));
        assert!(counter_clocksource("arch_sys_counter\n"));
        // A kernel that found the TSC unstable moves to one of these.
        for other in [
            "kvm-clock\n",
            "hpet\n",
            "acpi_pm\n",
            "xen\n",
            "hyperv_clocksource_tsc_page\n",
            "",
        ] {
            assert!(!counter_clocksource(other), "{other:?}");
        }
    }

    #[test]
    fn points_in_time_order_add_and_subtract() {
        let first = started();
        let later = first + Duration::from_millis(5);
        assert!(later > first);
        assert_eq!(later.duration_since(first), Duration::from_millis(5));
        assert_eq!(first.duration_since(later), Duration::ZERO);
        assert!(started() >= first);
    }

    #[test]
    fn a_clock_set_before_1970_fails_closed() {
        // Read as the epoch, every credential would still be valid; read as the far
        // future, every credential has expired and every caller is refused.
        let now = unix_seconds(-5);
        assert!(now > 4_000_000_000, "a clock before 1970 read as {now}");
        assert_eq!(unix_seconds(1_790_000_000), 1_790_000_000);
    }

    #[test]
    fn elapsed_time_agrees_with_the_monotonic_clock() {
        // Ours is read inside std's interval, around a 20 ms sleep: it cannot be shorter than
        // the sleep nor longer than std's reading, but for calibration error.
        let std_started = std::time::Instant::now();
        let ours = started();
        std::thread::sleep(Duration::from_millis(20));
        let ours = ours.elapsed();
        let std = std_started.elapsed();
        assert!(ours >= Duration::from_micros(19_600), "{ours:?}");
        assert!(ours <= std.mul_f64(1.02), "quanta {ours:?} vs std {std:?}");
    }
}
