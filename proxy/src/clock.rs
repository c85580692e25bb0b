//! A coarse monotonic clock, for the timestamps that are only compared against timeouts of
//! milliseconds or more: a client connection's activity (header-read, idle, body and send
//! timeouts) and an idle upstream connection's age.
//!
//! `Instant::now` reads the TSC through the vDSO: about 35 ns on the benchmark machine, and
//! a new connection's request took eleven readings, a keep-alive one seven (callgrind
//! counts the calls; perf put `__vdso_clock_gettime` at 0.4 µs per new-connection request).
//! `CLOCK_MONOTONIC_COARSE` returns the time of the last timer tick from the same vDSO page
//! without reading the TSC, at the tick's resolution (4 ms at `HZ=250`). Each reading is up
//! to a tick behind the true time, so a span measured with it is off by up to a tick either
//! way, and a timeout fires up to a tick early or late: nothing here is that close.
//!
//! What needs precision keeps `Instant`: request latency (the histogram) and the deadlines
//! tokio's timers compute.

use std::time::Duration;

/// A reading of the coarse monotonic clock (on Linux; elsewhere, of `Instant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CoarseInstant(Duration);

impl CoarseInstant {
    /// Now, as of the last timer tick.
    pub(crate) fn now() -> Self {
        Self(read())
    }

    /// The time since this reading, as the coarse clock sees it (zero rather than negative).
    pub(crate) fn elapsed(self) -> Duration {
        read().saturating_sub(self.0)
    }
}

#[cfg(target_os = "linux")]
fn read() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    // A monotonic clock counts from boot: neither field is negative.
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(not(target_os = "linux"))]
fn read() -> Duration {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed()
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
