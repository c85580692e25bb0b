//! Prometheus metrics of the data plane. Per-route handles are resolved once per served
//! configuration, when it is swapped in, and kept beside it: the hot path bumps atomics, it
//! does not build label sets, however many tables have requests in flight after a swap.

use std::sync::{
    Arc, Weak,
    atomic::{AtomicU64, Ordering},
};

use lockstep_config::RouteTable;
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

use crate::state::ProxyState;

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
    builds: AtomicU64,
}

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
}

/// The route handles of one served configuration, in the table's route order. Built once
/// when the configuration is swapped in and kept beside it, so every request on it, however
/// many tables are live, finds its handles without building anything.
#[derive(Debug)]
pub(crate) struct RouteSet {
    routes: Vec<RouteMetrics>,
    unrouted: RouteMetrics,
}

impl RouteSet {
    /// The handles of a route of this set's configuration, or of unrouted requests.
    pub(crate) fn route(&self, index: Option<usize>) -> &RouteMetrics {
        index.and_then(|i| self.routes.get(i)).unwrap_or(&self.unrouted)
    }
}

/// The proxy's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    series: Arc<RouteSeries>,
    unrouted: RouteMetrics,
    upstream_errors: Family<KindLabel, Counter>,
    in_flight: Gauge,
    connections: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    /// Registers every metric; `state` feeds the ones read at scrape time.
    pub(crate) fn new(state: Weak<ProxyState>) -> Self {
        let mut registry = Registry::with_prefix("lockstep_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RouteLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let upstream_errors = Family::<KindLabel, Counter>::default();
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
            builds: AtomicU64::new(0),
        });
        Self {
            registry,
            unrouted: series.handles(NO_ROUTE),
            series,
            upstream_errors,
            in_flight,
            connections,
        }
    }

    /// Builds the route handles of `table`. Called once per swapped-in configuration.
    pub(crate) fn route_set(&self, table: &RouteTable) -> RouteSet {
        let routes = table
            .routes()
            .iter()
            .map(|r| self.series.handles(&r.label()))
            .collect();
        self.series.builds.fetch_add(1, Ordering::Relaxed);
        RouteSet {
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

    /// The in-flight request gauge.
    pub(crate) fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// The open client connection gauge.
    pub(crate) fn connections(&self) -> &Gauge {
        &self.connections
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Metrics read from the state at scrape time.
#[derive(Debug)]
struct StateCollector {
    state: Weak<ProxyState>,
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
        let served = state.served();
        let mut family = encoder.encode_descriptor(
            "served_generation",
            "Generation of each RouterConfig in the served table",
            None,
            MetricType::Gauge,
        )?;
        for object in served.objects.values() {
            let labels = ObjectLabels {
                namespace: object.key.namespace.clone(),
                name: object.key.name.clone(),
            };
            ConstGauge::new(object.generation).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
