//! A coarse monotonic clock, for the timestamps that are only compared against timeouts of
//! milliseconds or more: a client connection's activity (header-read, idle, body and send
//! timeouts, and an HTTP/1 request's upstream response deadline) and an idle upstream
//! connection's age.
//!
//! `Instant::now` reads the TSC through the vDSO: about 35 ns on the benchmark machine, and
//! a new connection's request took eleven readings, a keep-alive one seven (callgrind
//! counts the calls; perf put `__vdso_clock_gettime` at 0.4 µs per new-connection request).
//! `CLOCK_MONOTONIC_COARSE` returns the time of the last timer tick from the same vDSO page
//! without reading the TSC, at the tick's resolution (4 ms at `HZ=250`). Each reading is up
//! to a tick (and the millisecond it drops) behind the true time, so a span measured with it
//! is off by up to that much either way. A timeout must not pass early (a backend answering
//! in 298 ms under a 300 ms limit gets its answer through), so each is padded by the most a
//! reading lags ([`max_lag_millis`]): it passes up to two ticks late, never early. An idle
//! upstream connection's age is not padded: dropping it a tick early is the safe side.
//!
//! What needs precision keeps `Instant`: request latency (the histogram) and the deadlines
//! tokio's timers compute.

use std::time::Duration;

/// A reading of the coarse monotonic clock (on Linux; elsewhere, of `Instant`), in whole
/// milliseconds: the clock moves a tick (4 ms at `HZ=250`) at a time, and whole
/// milliseconds spare each reading the arithmetic of a `Duration` (about 15 instructions of
/// the 45 a reading took, and a keep-alive request reads it about seven times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CoarseInstant(u64);

impl CoarseInstant {
    /// Now, as of the last timer tick.
    pub(crate) fn now() -> Self {
        Self(read_millis())
    }

    /// The time since this reading, as the coarse clock sees it (zero rather than negative).
    pub(crate) fn elapsed(self) -> Duration {
        Duration::from_millis(self.millis_elapsed())
    }

    /// [`CoarseInstant::elapsed`] in milliseconds.
    pub(crate) fn millis_elapsed(self) -> u64 {
        read_millis().saturating_sub(self.0)
    }
}

/// The most a reading lags the true time, in whole milliseconds: the clock's resolution
/// (a tick), rounded up, and the millisecond a reading drops. Read once.
pub(crate) fn max_lag_millis() -> u64 {
    static LAG: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LAG.get_or_init(|| resolution_millis() + 1)
}

#[cfg(target_os = "linux")]
fn resolution_millis() -> u64 {
    let res = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
    let nanos =
        u64::try_from(res.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(res.tv_nsec).unwrap_or(0);
    nanos.div_ceil(1_000_000)
}

#[cfg(not(target_os = "linux"))]
fn resolution_millis() -> u64 {
    0
}

#[cfg(target_os = "linux")]
fn read_millis() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    // A monotonic clock counts from boot: neither field is negative.
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1000 + nanos / 1_000_000
}

#[cfg(not(target_os = "linux"))]
fn read_millis() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(ORIGIN.get_or_init(std::time::Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The coarse clock runs with the precise one: never ahead of it, and behind it by no
    /// more than a tick (a generous 20 ms here, for a loaded test machine).
    #[test]
    fn the_coarse_clock_follows_the_precise_one_within_a_tick() {
        let (coarse, precise) = (CoarseInstant::now(), Instant::now());
        std::thread::sleep(Duration::from_millis(50));
        let (coarse_elapsed, precise_elapsed) = (coarse.elapsed(), precise.elapsed());
        assert!(
            coarse_elapsed + Duration::from_millis(20) >= precise_elapsed,
            "coarse {coarse_elapsed:?} far behind precise {precise_elapsed:?}"
        );
        assert!(
            coarse_elapsed <= precise_elapsed + Duration::from_millis(20),
            "coarse {coarse_elapsed:?} far ahead of precise {precise_elapsed:?}"
        );
        assert!(coarse_elapsed >= Duration::from_millis(40), "{coarse_elapsed:?}");
    }

    /// The padding counts the dropped millisecond and a whole tick: a padded timeout is never
    /// zero (the watchdog's "none") and never passes early.
    #[test]
    fn the_lag_covers_a_tick_and_the_dropped_millisecond() {
        assert!(max_lag_millis() >= 1);
        // A coarse tick is a millisecond at the least (HZ is at most 1000).
        #[cfg(target_os = "linux")]
        assert!(max_lag_millis() >= 2, "{}", max_lag_millis());
    }

    #[test]
    fn readings_never_go_backwards() {
        let mut last = CoarseInstant::now();
        for _ in 0..10_000 {
            let now = CoarseInstant::now();
            assert!(now >= last);
            last = now;
        }
    }
}
