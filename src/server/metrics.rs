//! Prometheus metrics, one registry per server so tests (and several servers in a process)
//! never share counters.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use super::state::AppState;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    inference: HistogramVec,
    pub rejected_busy: IntCounter,
    pub queued: IntGauge,
    pub items: IntGauge,
}

/// Latency buckets from 1 ms to 30 s: searches by id take milliseconds, by upload tens of ms,
/// an index job minutes.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new_custom(Some("lookalike".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let inference = HistogramVec::new(
            HistogramOpts::new(
                "inference_duration_seconds",
                "Time in the engine for decode + embed (+ search), by operation",
            )
            .buckets(BUCKETS.to_vec()),
            &["op"],
        )?;
        let rejected_busy = IntCounter::new(
            "inference_rejected_total",
            "Requests answered 503 because no inference slot freed up in time",
        )?;
        let queued = IntGauge::new(
            "inference_waiting",
            "Requests waiting for an inference slot",
        )?;
        let items = IntGauge::new("index_items", "Items in the index")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(inference.clone()))?;
        registry.register(Box::new(rejected_busy.clone()))?;
        registry.register(Box::new(queued.clone()))?;
        registry.register(Box::new(items.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            inference,
            rejected_busy,
            queued,
            items,
        })
    }

    pub fn observe_inference(&self, op: &str, seconds: f64) {
        self.inference.with_label_values(&[op]).observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> prometheus::Result<String> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Middleware recording every request. The route label is the route template
/// (`/api/items/{id}`), never the raw path, and the method one of a fixed few, so label
/// cardinality stays bounded whatever clients send (2,000 made-up methods once grew
/// `/metrics` to 75 MB).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = match *request.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let start = Instant::now();
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics
        .latency
        .with_label_values(&[route.as_str(), method])
        .observe(start.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[route.as_str(), method, response.status().as_str()])
        .inc();
    response
}
