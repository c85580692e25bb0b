//! Prometheus metrics of the data plane. Per-route handles are resolved once per served
//! configuration, when it is swapped in, and kept beside it: the hot path bumps atomics, it
//! does not build label sets, however many tables have requests in flight after a swap.
//!
//! Series of removed routes are dropped after the next scrape: a route is live while any
//! table that is served or still has requests in flight routes it; once none does, its
//! request counters and latency histogram appear in exactly one more `/metrics` scrape
//! (with their final counts, so `increase()` loses nothing), and are then removed. A proxy
//! that nobody scrapes keeps at most as many retired routes as it has live ones (or 10,000),
//! dropping the oldest at once beyond that. Routes that come back get fresh counters, as
//! after a restart.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use lockstep_core::{ObjectKey, RouteTable};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::Registry,
};

/// What the scrape-time collector reads from the state it reports on. The state owns the
/// metrics and implements this, so the dependency runs one way: state → metrics.
pub(crate) trait ScrapeView: Send + Sync + std::fmt::Debug {
    /// Route table swaps since start.
    fn swap_count(&self) -> u64;
    /// What `/readyz` answers.
    fn is_ready(&self) -> bool;
    /// The served RouterConfigs and their generations.
    fn served_generations(&self) -> Vec<(ObjectKey, i64)>;
}

/// Route label of requests that matched no route.
const NO_ROUTE: &str = "";

/// Latency buckets in seconds, from sub-millisecond proxying to slow upstreams.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    namespace: String,
    name: String,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counters and latency of one route.
#[derive(Clone, Debug)]
pub(crate) struct RouteMetrics {
    by_class: [Counter; 5],
    latency: Histogram,
}

impl RouteMetrics {
    /// Records one response head.
    pub(crate) fn observe(&self, status: http::StatusCode, seconds: f64) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.latency.observe(seconds);
    }
}

/// The per-route series and which routes are live.
#[derive(Debug)]
struct RouteSeries {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    liveness: Mutex<Liveness>,
    builds: AtomicU64,
}

#[derive(Debug, Default)]
struct Liveness {
    /// For each route label, how many routes of live route sets carry it.
    live: HashMap<String, usize>,
    /// Labels no live route set carries any more, oldest first, whose series wait for a
    /// scrape to show their final counts.
    retired: VecDeque<String>,
}

/// Retired routes whose series may wait for a scrape, beyond the number of live routes: a
/// proxy nobody scrapes drops the oldest beyond this at once.
const RETIRED_SLACK: usize = 10_000;

impl RouteSeries {
    fn handles(&self, route: &str) -> RouteMetrics {
        let counter = |class: &'static str| {
            self.requests
                .get_or_create(&RequestLabels {
                    route: route.to_owned(),
                    class,
                })
                .clone()
        };
        RouteMetrics {
            by_class: CLASSES.map(counter),
            latency: self
                .latency
                .get_or_create(&RouteLabel {
                    route: route.to_owned(),
                })
                .clone(),
        }
    }

    /// Removes a route's series (the caller holds the liveness lock and checked that no live
    /// route set carries it).
    fn remove(&self, route: &str) {
        for class in CLASSES {
            self.requests.remove(&RequestLabels {
                route: route.to_owned(),
                class,
            });
        }
        self.latency.remove(&RouteLabel {
            route: route.to_owned(),
        });
    }

    fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        // Counting is done under the lock in steps that leave it consistent.
        self.liveness.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The route handles of one served configuration, in the table's route order. Built once
/// when the configuration is swapped in and kept beside it, so every request on it, however
/// many tables are live, finds its handles without building anything. When the last request
/// on it is done and it is dropped, the routes no other live table has are retired.
#[derive(Debug)]
pub(crate) struct RouteSet {
    series: Arc<RouteSeries>,
    labels: Vec<String>,
    routes: Vec<RouteMetrics>,
    unrouted: RouteMetrics,
}

impl RouteSet {
    /// The handles of a route of this set's configuration, or of unrouted requests.
    pub(crate) fn route(&self, index: Option<usize>) -> &RouteMetrics {
        index.and_then(|i| self.routes.get(i)).unwrap_or(&self.unrouted)
    }
}

impl Drop for RouteSet {
    fn drop(&mut self) {
        let mut liveness = self.series.liveness();
        for label in self.labels.drain(..) {
            if let Some(count) = liveness.live.get_mut(&label) {
                *count -= 1;
                if *count == 0 {
                    liveness.live.remove(&label);
                    liveness.retired.push_back(label);
                }
            }
        }
        let slack = liveness.live.len().max(RETIRED_SLACK);
        while liveness.retired.len() > slack {
            if let Some(label) = liveness.retired.pop_front()
                && !liveness.live.contains_key(&label)
            {
                self.series.remove(&label);
            }
        }
    }
}

/// The proxy's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    series: Arc<RouteSeries>,
    unrouted: RouteMetrics,
    upstream_errors: Family<KindLabel, Counter>,
    sync_failures: Family<KindLabel, Counter>,
    client_timeouts: Family<KindLabel, Counter>,
    connections_refused: Counter,
    in_flight: Gauge,
    connections: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    /// Registers every metric; `state` feeds the ones read at scrape time (weak: the state
    /// owns these metrics).
    pub(crate) fn new(state: Weak<dyn ScrapeView>) -> Self {
        let mut registry = Registry::with_prefix("lockstep_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RouteLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let upstream_errors = Family::<KindLabel, Counter>::default();
        let sync_failures = Family::<KindLabel, Counter>::default();
        let client_timeouts = Family::<KindLabel, Counter>::default();
        let connections_refused = Counter::default();
        let in_flight = Gauge::default();
        let connections = Gauge::default();
        registry.register(
            "requests",
            "Requests answered, by route and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head, by route",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures by kind (connect, connect_timeout, response_timeout, protocol, no_endpoints, bad_backend)",
            upstream_errors.clone(),
        );
        registry.register(
            "sync_failures",
            "Times the fleet sync loop gave up membership, by kind (SyncFailed: it panicked; SyncStalled: a pass ran past its bound)",
            sync_failures.clone(),
        );
        registry.register(
            "client_timeouts",
            "Client connections cut by a timeout, by kind (head, request_body, send, tunnel_idle)",
            client_timeouts.clone(),
        );
        registry.register(
            "client_connections_refused",
            "Client connections closed at accept because the listener had --max-client-connections open",
            connections_refused.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests whose response is not finished",
            in_flight.clone(),
        );
        registry.register(
            "client_connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register_collector(Box::new(StateCollector { state }));
        let series = Arc::new(RouteSeries {
            requests,
            latency,
            liveness: Mutex::default(),
            builds: AtomicU64::new(0),
        });
        Self {
            registry,
            unrouted: series.handles(NO_ROUTE),
            series,
            upstream_errors,
            sync_failures,
            client_timeouts,
            connections_refused,
            in_flight,
            connections,
        }
    }

    /// Builds the route handles of `table`, marking its routes live until the set is
    /// dropped. Called once per swapped-in configuration.
    pub(crate) fn route_set(&self, table: &RouteTable) -> RouteSet {
        let labels: Vec<String> = table.routes().iter().map(|r| r.label()).collect();
        let mut liveness = self.series.liveness();
        let routes = labels
            .iter()
            .map(|label| {
                *liveness.live.entry(label.clone()).or_insert(0) += 1;
                self.series.handles(label)
            })
            .collect();
        drop(liveness);
        self.series.builds.fetch_add(1, Ordering::Relaxed);
        RouteSet {
            series: self.series.clone(),
            labels,
            routes,
            unrouted: self.unrouted.clone(),
        }
    }

    /// How many route sets were built since start: one per configuration swapped in, never
    /// one per request.
    pub fn route_set_builds(&self) -> u64 {
        self.series.builds.load(Ordering::Relaxed)
    }

    /// Counts one upstream failure.
    pub(crate) fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts one failure of the fleet sync loop (`SyncFailed` or `SyncStalled`).
    pub(crate) fn sync_failure(&self, kind: &'static str) {
        self.sync_failures.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts one client connection cut by the timeout of `kind`.
    pub(crate) fn client_timeout(&self, kind: &'static str) {
        self.client_timeouts.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts one client connection refused at the connection limit.
    pub(crate) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// The in-flight request gauge.
    pub(crate) fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// The open client connection gauge.
    pub(crate) fn connections(&self) -> &Gauge {
        &self.connections
    }

    /// The Prometheus text exposition. The series of a route that no live table has any
    /// more are in it one last time, with their final counts, and then dropped.
    pub fn render(&self) -> String {
        // Only routes retired before this scrape started: their counts can no longer change.
        let due = std::mem::take(&mut self.series.liveness().retired);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        if !due.is_empty() {
            let liveness = self.series.liveness();
            for label in due {
                if !liveness.live.contains_key(&label) {
                    self.series.remove(&label);
                }
            }
        }
        out
    }
}

/// Metrics read from the state at scrape time.
#[derive(Debug)]
struct StateCollector {
    state: Weak<dyn ScrapeView>,
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(state) = self.state.upgrade() else {
            return Ok(());
        };
        let swaps = ConstCounter::new(state.swap_count());
        swaps.encode(encoder.encode_descriptor(
            "config_swaps",
            "Route table swaps since start",
            None,
            swaps.metric_type(),
        )?)?;
        let ready = ConstGauge::new(i64::from(state.is_ready()));
        ready.encode(encoder.encode_descriptor(
            "ready",
            "1 while /readyz answers 200",
            None,
            ready.metric_type(),
        )?)?;
        let generations = state.served_generations();
        let mut family = encoder.encode_descriptor(
            "served_generation",
            "Generation of each RouterConfig in the served table",
            None,
            MetricType::Gauge,
        )?;
        for (key, generation) in generations {
            let labels = ObjectLabels {
                namespace: key.namespace,
                name: key.name,
            };
            ConstGauge::new(generation).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_state() -> Weak<dyn ScrapeView> {
        #[derive(Debug)]
        struct Gone;
        impl ScrapeView for Gone {
            fn swap_count(&self) -> u64 {
                0
            }
            fn is_ready(&self) -> bool {
                false
            }
            fn served_generations(&self) -> Vec<(ObjectKey, i64)> {
                Vec::new()
            }
        }
        Weak::<Gone>::new()
    }

    fn table(paths: &[&str]) -> RouteTable {
        let key = ObjectKey {
            namespace: "ns".into(),
            name: "web".into(),
        };
        let paths: Vec<_> = paths
            .iter()
            .map(|p| serde_json::json!({"path": p, "backend": {"url": "http://127.0.0.1:1"}}))
            .collect();
        let spec: lockstep_crds::RouterConfigSpec =
            serde_json::from_value(serde_json::json!({"rules": [{"host": "a.test", "paths": paths}]}))
                .expect("spec");
        RouteTable::compile([(&key, &spec)])
    }

    fn routes(metrics: &Metrics) -> Vec<String> {
        let text = metrics.render();
        let mut routes: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("lockstep_proxy_requests_total{"))
            .filter_map(|l| l.split("route=\"").nth(1)?.split('"').next())
            .map(str::to_owned)
            .collect();
        routes.sort();
        routes.dedup();
        routes
    }

    #[test]
    fn a_route_is_dropped_one_scrape_after_the_last_table_with_it() {
        let metrics = Metrics::new(no_state());
        let old = metrics.route_set(&table(&["/keep", "/gone"]));
        let new = metrics.route_set(&table(&["/keep", "/new"]));
        old.route(Some(1)).observe(http::StatusCode::OK, 0.001);
        let all = [
            "",
            "ns/web a.test/gone",
            "ns/web a.test/keep",
            "ns/web a.test/new",
        ];
        assert_eq!(routes(&metrics), all);
        // The old table is gone: /gone is shown once more, with its count, then dropped.
        drop(old);
        let text = metrics.render();
        assert!(
            text.contains("lockstep_proxy_requests_total{route=\"ns/web a.test/gone\",class=\"2xx\"} 1"),
            "{text}"
        );
        assert_eq!(routes(&metrics), ["", "ns/web a.test/keep", "ns/web a.test/new"]);
        drop(new);
        assert_eq!(routes(&metrics), ["", "ns/web a.test/keep", "ns/web a.test/new"]);
        assert_eq!(routes(&metrics), [""]);
    }

    #[test]
    fn a_route_that_comes_back_before_the_scrape_keeps_its_counters() {
        let metrics = Metrics::new(no_state());
        let first = metrics.route_set(&table(&["/a"]));
        first.route(Some(0)).observe(http::StatusCode::OK, 0.001);
        drop(first);
        let again = metrics.route_set(&table(&["/a"]));
        again.route(Some(0)).observe(http::StatusCode::OK, 0.001);
        metrics.render();
        let text = metrics.render();
        assert!(
            text.contains("lockstep_proxy_requests_total{route=\"ns/web a.test/a\",class=\"2xx\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn without_scrapes_retired_routes_are_bounded() {
        let metrics = Metrics::new(no_state());
        for i in 0..(RETIRED_SLACK + 50) {
            let path = format!("/p{i}");
            drop(metrics.route_set(&table(&[path.as_str()])));
        }
        assert_eq!(metrics.series.liveness().retired.len(), RETIRED_SLACK);
        assert_eq!(routes(&metrics).len(), RETIRED_SLACK + 1);
        assert_eq!(routes(&metrics), [""]);
    }
}
