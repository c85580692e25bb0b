//! Resolution of FQDN endpoints, kept off the route table's swap path.
//!
//! EndpointSlices of `addressType: FQDN` list names, not addresses. The sync loop used to look
//! them up one after another, each bounded by 2 s, before every swap, and a pass runs at least
//! once a second: N slow names held every swap for N × the lookup time, and a name that did
//! not answer cost 2 s on every pass. Here a lookup is:
//!
//! - **cached**: an answer (also "does not resolve") is reused for [`FRESH_FOR`], 5 s: the TTL
//!   CoreDNS gives the records of a cluster by default, so an answer is not older than a
//!   cluster's resolver would serve anyway (`getaddrinfo` does not say a record's own TTL).
//!   Past that, the old answer keeps being used while a lookup in the background refreshes
//!   it, and a refresh that changes the answer wakes the sync loop to apply it.
//! - **concurrent, bounded**: at most [`MAX_LOOKUPS`] at once, so many names are not waited
//!   for in a row, and a fleet of them does not flood the resolver or the blocking pool that
//!   `getaddrinfo` (and the plan step) run on.
//! - **bounded in time**: a pass waits only for names it has never resolved, at most
//!   [`WAIT_CAP`] in all (the bound one lookup had before), so a table that routes to a new
//!   Service still gets its endpoints in the common case. Lookups still running then finish in
//!   the background and wake the loop; each lookup is bounded by [`LOOKUP_TIMEOUT`].

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{Notify, Semaphore},
    time::Instant,
};

use super::slices::EndpointAddr;

/// How long an answer is used without looking the name up again.
pub const FRESH_FOR: Duration = Duration::from_secs(5);
/// Most lookups in flight at once.
pub const MAX_LOOKUPS: usize = 16;
/// Longest a pass waits for names it has never resolved, all of them together.
pub const WAIT_CAP: Duration = Duration::from_secs(2);
/// Longest one lookup may take; a name that does not answer in time does not resolve.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// How a name is looked up: the system resolver ([`system_lookup`]), or a test's stand-in.
pub type Lookup = Arc<
    dyn Fn(String, u16) -> futures::future::BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>
        + Send
        + Sync,
>;

/// The system resolver (`getaddrinfo` on tokio's blocking pool).
pub fn system_lookup() -> Lookup {
    Arc::new(|name: String, port: u16| {
        Box::pin(async move { Ok(tokio::net::lookup_host((name.as_str(), port)).await?.collect()) })
    })
}

/// A name and port as looked up: lower case, without the trailing dot.
type Name = (String, u16);

#[derive(Debug)]
struct Entry {
    /// The last answer (empty: did not resolve); None until the first lookup ends.
    answer: Option<Vec<SocketAddr>>,
    /// When that answer came.
    at: Instant,
    /// A lookup is in flight.
    looking: bool,
}

/// The resolver's bounds; the defaults are the constants above (tests shrink them).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// See [`FRESH_FOR`].
    pub fresh_for: Duration,
    /// See [`WAIT_CAP`].
    pub wait_cap: Duration,
    /// See [`LOOKUP_TIMEOUT`].
    pub lookup_timeout: Duration,
    /// See [`MAX_LOOKUPS`].
    pub max_lookups: usize,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            fresh_for: FRESH_FOR,
            wait_cap: WAIT_CAP,
            lookup_timeout: LOOKUP_TIMEOUT,
            max_lookups: MAX_LOOKUPS,
        }
    }
}

/// Resolves FQDN endpoints with a cache (see the module doc).
pub struct Resolver {
    lookup: Lookup,
    timings: Timings,
    cache: Arc<Mutex<HashMap<Name, Entry>>>,
    permits: Arc<Semaphore>,
    /// Woken when a lookup nobody waits for changes an answer.
    wake: Arc<Notify>,
}

impl Resolver {
    /// A resolver that looks names up with `lookup` and wakes `wake` when an answer that
    /// arrived in the background changed.
    pub fn new(lookup: Lookup, wake: Arc<Notify>) -> Self {
        Self::with_timings(lookup, wake, Timings::default())
    }

    /// [`Resolver::new`] with other bounds.
    pub fn with_timings(lookup: Lookup, wake: Arc<Notify>, timings: Timings) -> Self {
        Self {
            lookup,
            timings,
            cache: Arc::default(),
            permits: Arc::new(Semaphore::new(timings.max_lookups)),
            wake,
        }
    }

    /// Makes answers ready for the names among `endpoints` (see the module doc for what is
    /// waited for), and forgets the names not among them.
    pub async fn prepare<'a>(&self, endpoints: impl IntoIterator<Item = &'a EndpointAddr>) {
        let names: BTreeSet<Name> = endpoints
            .into_iter()
            .filter_map(|endpoint| match endpoint {
                EndpointAddr::Name(name, port) => Some((normalise(name), *port)),
                EndpointAddr::Ip(_) => None,
            })
            .filter(|(name, _)| !is_localhost(name))
            .collect();
        let now = Instant::now();
        let mut first_time = Vec::new();
        {
            let mut cache = self.cache.lock().expect("resolver cache lock");
            cache.retain(|name, _| names.contains(name));
            for name in names {
                let entry = cache.entry(name.clone()).or_insert_with(|| {
                    first_time.push(name.clone());
                    Entry {
                        answer: None,
                        at: now,
                        looking: true,
                    }
                });
                if !entry.looking && now.duration_since(entry.at) >= self.timings.fresh_for {
                    entry.looking = true;
                    tokio::spawn(self.look_up(name, Arc::new(AtomicBool::new(true))));
                }
            }
        }
        if first_time.is_empty() {
            return;
        }
        let waited_out = Arc::new(AtomicBool::new(false));
        let lookups: Vec<_> = first_time
            .into_iter()
            .map(|name| tokio::spawn(self.look_up(name, waited_out.clone())))
            .collect();
        if tokio::time::timeout(self.timings.wait_cap, futures::future::join_all(lookups))
            .await
            .is_err()
        {
            // From here on, an answer that lands is applied by the pass it wakes.
            waited_out.store(true, Ordering::SeqCst);
        }
    }

    /// The addresses of `endpoints` as last answered; names without an answer are left out.
    pub fn addrs(&self, endpoints: &[EndpointAddr]) -> Vec<SocketAddr> {
        let cache = self.cache.lock().expect("resolver cache lock");
        let mut out = Vec::new();
        for endpoint in endpoints {
            match endpoint {
                EndpointAddr::Ip(addr) => out.push(*addr),
                EndpointAddr::Name(name, port) => {
                    let name = normalise(name);
                    if is_localhost(&name) {
                        out.push(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), *port));
                    } else if let Some(answer) = cache.get(&(name, *port)).and_then(|e| e.answer.as_ref()) {
                        out.extend(answer);
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// One lookup, within the concurrency bound; wakes the loop when `unwatched` is set by
    /// the time it lands and the answer changed.
    fn look_up(&self, name: Name, unwatched: Arc<AtomicBool>) -> impl Future<Output = ()> + use<> {
        let timeout = self.timings.lookup_timeout;
        let (lookup, cache, permits, wake) = (
            self.lookup.clone(),
            self.cache.clone(),
            self.permits.clone(),
            self.wake.clone(),
        );
        async move {
            let answer = {
                let _permit = permits.acquire_owned().await;
                tokio::time::timeout(timeout, lookup(name.0.clone(), name.1)).await
            };
            let mut answer = match answer {
                Ok(Ok(addrs)) => addrs,
                Ok(Err(error)) => {
                    tracing::warn!(endpoint = %name.0, %error, "endpoint name does not resolve; left out");
                    Vec::new()
                }
                Err(_) => {
                    tracing::warn!(endpoint = %name.0, ?timeout, "endpoint name does not resolve in time; left out");
                    Vec::new()
                }
            };
            answer.sort();
            answer.dedup();
            let changed = {
                let mut cache = cache.lock().expect("resolver cache lock");
                let entry = cache.entry(name).or_insert(Entry {
                    answer: None,
                    at: Instant::now(),
                    looking: false,
                });
                let changed = entry.answer.as_ref() != Some(&answer);
                entry.answer = Some(answer);
                entry.at = Instant::now();
                entry.looking = false;
                changed
            };
            if changed && unwatched.load(Ordering::SeqCst) {
                wake.notify_one();
            }
        }
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Names under `.localhost` are the loopback address (RFC 6761 §6.3), without asking DNS.
fn is_localhost(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Each lookup takes this long in these tests.
    const LOOKUP: Duration = Duration::from_millis(200);
    /// Bounds small enough for a unit test, in the same proportions.
    const TIMINGS: Timings = Timings {
        fresh_for: Duration::from_millis(400),
        wait_cap: Duration::from_millis(500),
        lookup_timeout: Duration::from_millis(500),
        max_lookups: 4,
    };
    /// No lookup waited for: well under one lookup, even on a busy machine.
    const AT_ONCE: Duration = Duration::from_millis(100);

    /// A lookup that answers 10.0.0.1 after [`LOOKUP`] (never, unless `answers`), counting
    /// calls.
    fn counted(answers: bool) -> (Lookup, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let lookup: Lookup = Arc::new(move |_name: String, port: u16| {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if !answers {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(LOOKUP).await;
                Ok(vec![SocketAddr::from(([10, 0, 0, 1], port))])
            })
        });
        (lookup, calls)
    }

    fn names(n: usize) -> Vec<EndpointAddr> {
        (0..n)
            .map(|i| EndpointAddr::Name(format!("n{i}.example."), 80))
            .collect()
    }

    fn within(took: Duration, at_least: Duration, below: Duration) {
        assert!(
            at_least <= took && took < below,
            "took {took:?}, not in {at_least:?}..{below:?}"
        );
    }

    #[tokio::test]
    async fn many_slow_names_cost_one_lookup_time_not_their_sum() {
        let (lookup, calls) = counted(true);
        let resolver = Resolver::with_timings(lookup, Arc::default(), TIMINGS);
        let endpoints = names(TIMINGS.max_lookups);
        let started = Instant::now();
        resolver.prepare(&endpoints).await;
        within(started.elapsed(), LOOKUP, LOOKUP * 2);
        assert_eq!(
            resolver.addrs(&endpoints[..1]),
            vec![SocketAddr::from(([10, 0, 0, 1], 80))]
        );
        assert_eq!(calls.load(Ordering::SeqCst), TIMINGS.max_lookups);

        // Fresh answers are reused: no lookup, no wait.
        let started = Instant::now();
        resolver.prepare(&endpoints).await;
        within(started.elapsed(), Duration::ZERO, AT_ONCE);
        assert_eq!(calls.load(Ordering::SeqCst), TIMINGS.max_lookups);
    }

    #[tokio::test]
    async fn at_most_max_lookups_run_at_once() {
        let (lookup, _) = counted(true);
        let resolver = Resolver::with_timings(lookup, Arc::default(), TIMINGS);
        let started = Instant::now();
        resolver.prepare(&names(TIMINGS.max_lookups + 1)).await;
        within(started.elapsed(), LOOKUP * 2, TIMINGS.wait_cap + AT_ONCE);
    }

    #[tokio::test]
    async fn names_that_do_not_answer_hold_a_pass_for_the_cap_once_then_land_in_the_background() {
        let (lookup, calls) = counted(false);
        let wake = Arc::new(Notify::new());
        let resolver = Resolver::with_timings(lookup, wake.clone(), TIMINGS);
        let endpoints = names(10);
        let started = Instant::now();
        resolver.prepare(&endpoints).await;
        within(started.elapsed(), TIMINGS.wait_cap, TIMINGS.wait_cap + AT_ONCE);
        assert!(resolver.addrs(&endpoints).is_empty(), "no answer yet: left out");

        // The next pass waits for them no more.
        let started = Instant::now();
        resolver.prepare(&endpoints).await;
        within(started.elapsed(), Duration::ZERO, AT_ONCE);

        // Every lookup times out in the end ("does not resolve"), in the background, each
        // name looked up once; the loop is woken for the answers that landed after its pass.
        tokio::time::sleep(TIMINGS.lookup_timeout * 4).await;
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        tokio::time::timeout(AT_ONCE, wake.notified())
            .await
            .expect("a wake for answers that landed after the pass");
    }

    #[tokio::test]
    async fn a_stale_answer_is_used_while_it_is_refreshed_in_the_background() {
        let (lookup, calls) = counted(true);
        let wake = Arc::new(Notify::new());
        let resolver = Resolver::with_timings(lookup, wake.clone(), TIMINGS);
        let endpoints = names(1);
        resolver.prepare(&endpoints).await;
        tokio::time::sleep(TIMINGS.fresh_for).await;

        let started = Instant::now();
        resolver.prepare(&endpoints).await;
        within(started.elapsed(), Duration::ZERO, AT_ONCE);
        assert_eq!(
            resolver.addrs(&endpoints),
            vec![SocketAddr::from(([10, 0, 0, 1], 80))]
        );
        tokio::time::sleep(LOOKUP * 2).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "refreshed once");
        // The same answer again: nothing to apply, no wake.
        assert!(tokio::time::timeout(AT_ONCE, wake.notified()).await.is_err());
    }

    #[tokio::test]
    async fn localhost_names_are_loopback_and_unknown_names_are_left_out() {
        let resolver = Resolver::new(system_lookup(), Arc::default());
        let endpoints = vec![
            EndpointAddr::Name("api.localhost".into(), 18092),
            EndpointAddr::Name("b.localhost.".into(), 18092),
            EndpointAddr::Name("does-not-exist.invalid".into(), 1),
        ];
        resolver.prepare(&endpoints).await;
        assert_eq!(
            resolver.addrs(&endpoints),
            vec!["127.0.0.1:18092".parse().unwrap()]
        );
    }
}
