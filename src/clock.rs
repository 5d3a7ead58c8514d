//! The request path's two clocks, chosen for what each reading is used for.
//!
//! - **Wall time** decides validity windows only: a token's `exp`/`nbf`/`iat`, a certificate's
//!   validity, a memo entry's lifetime, all in whole seconds. It is read from the kernel's
//!   coarse real-time clock (the time of the last scheduler tick, at most a few milliseconds
//!   old) for a few nanoseconds, where the precise clock costs tens on every request. A
//!   credential is therefore honoured at most one tick past its expiry second.
//! - **Elapsed time** (the latency histogram, a record's `elapsed_us`, budgets) comes from
//!   `quanta`: the CPU's timestamp counter where it is invariant, calibrated against the
//!   monotonic clock, and the monotonic clock itself elsewhere.
//!
//! Everything off the request path (fetch schedules, the audit writer's wall stamps) keeps
//! `std::time`.

use std::time::Duration;

use rustls_pki_types::UnixTime;

/// A point in time for measuring what a request took.
pub type Started = quanta::Instant;

/// Now, for measuring: see [`Started`].
#[inline]
pub fn started() -> Started {
    quanta::Instant::now()
}

/// Calibrates the timestamp counter (it takes milliseconds, once) so that the first request
/// does not pay for it.
pub fn prepare() {
    let _ = started();
    let _ = wall();
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
    UnixTime::now().as_secs()
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
