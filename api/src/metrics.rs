//! Request metrics and the node's recent history of its own figures.
//!
//! - [`track_requests`] observes every API request in
//!   `gavel_http_request_duration_seconds{route, method, status}`: `route` is the route's
//!   pattern (`/v1/auctions/{id}/bids`), never the raw path, so the label set stays
//!   bounded whatever clients send (unmatched paths count as `unmatched`). A bid sent as a
//!   WebSocket message is observed there too, as route `/v1/auctions/{id}/ws`, method
//!   `BID`.
//! - [`run_sampler`] takes a [`Sample`] every [`SAMPLE_INTERVAL_SECS`] and keeps the last
//!   [`HISTORY_SAMPLES_MAX`]: accepted bids per second, requests per second, the p99 of
//!   bid requests and the p99 of Raft commits over the interval. `GET /v1/metrics/history`
//!   serves them (the web page's operator charts); Prometheus scrapes `/metrics` for the
//!   long run.
//!
//! - Live updates and limits: [`LIVE_STREAMS`] (SSE streams and WebSockets open now),
//!   [`WS_DROPPED`] (WebSockets the node closed: a full send queue, a silent client),
//!   [`RATE_LIMITED`] (429 refusals by bucket kind), and the UDP sender's queue
//!   ([`UDP_QUEUE`], read at scrape time by [`refresh`] with the gauges of the other
//!   crates).
//!
//! The p99 of an interval is read off the histogram's bucket counts at its start and end:
//! the upper bound of the bucket holding the 99th percentile, as Prometheus'
//! `histogram_quantile` would interpolate it.

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus::core::Collector;
use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec, HistogramVec,
    IntCounterVec, IntGauge, IntGaugeVec,
};
use serde::Serialize;
use tokio::sync::watch;

use crate::json::{now_ms, rfc3339};
use crate::state::AppState;

/// Seconds between two samples of the history.
pub const SAMPLE_INTERVAL_SECS: u64 = 5;
/// Samples kept: 15 minutes.
pub const HISTORY_SAMPLES_MAX: usize = 180;

/// The routes whose p99 the history follows: HTTP bids, and bids sent as WebSocket
/// messages (observed under the socket's route with the method `BID`).
const BID_ROUTES: [(&str, &str); 2] = [("/v1/auctions/{id}/bids", "POST"), (WS_ROUTE, WS_BID_METHOD)];
const WS_ROUTE: &str = "/v1/auctions/{id}/ws";
const WS_BID_METHOD: &str = "BID";

pub static HTTP_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "gavel_http_request_duration_seconds",
        "Time to answer an API request, by route pattern, method and status.",
        &["route", "method", "status"],
        gavel_raft::metrics::LATENCY_BUCKETS_SECONDS.to_vec()
    )
    .expect("metric registers once")
});

/// Label values of [`LIVE_STREAMS`].
pub const TRANSPORT_SSE: &str = "sse";
pub const TRANSPORT_WEBSOCKET: &str = "websocket";
/// Label values of [`WS_DROPPED`].
pub const WS_DROPPED_SEND_QUEUE_FULL: &str = "send_queue_full";
pub const WS_DROPPED_IDLE: &str = "idle";
/// Label values of [`RATE_LIMITED`].
pub const LIMIT_ADDRESS: &str = "address";
pub const LIMIT_ACCOUNT: &str = "account";

pub static LIVE_STREAMS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    let g = register_int_gauge_vec!(
        "gavel_live_streams",
        "Live-update streams open on this node: SSE streams and WebSockets.",
        &["transport"]
    )
    .expect("metric registers once");
    for t in [TRANSPORT_SSE, TRANSPORT_WEBSOCKET] {
        g.with_label_values(&[t]);
    }
    g
});

pub static WS_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = register_int_counter_vec!(
        "gavel_websocket_dropped_total",
        "WebSockets the node closed: the client read too slowly and its send queue filled, or it went silent.",
        &["reason"]
    )
    .expect("metric registers once");
    for r in [WS_DROPPED_SEND_QUEUE_FULL, WS_DROPPED_IDLE] {
        c.with_label_values(&[r]);
    }
    c
});

pub static RATE_LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = register_int_counter_vec!(
        "gavel_rate_limited_total",
        "Requests refused with 429 rate_limited, by the bucket that refused them: per source address or per account.",
        &["kind"]
    )
    .expect("metric registers once");
    for k in [LIMIT_ADDRESS, LIMIT_ACCOUNT] {
        c.with_label_values(&[k]);
    }
    c
});

pub static UDP_QUEUE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "gavel_udp_send_queue_pushes",
        "Pushes (one datagram for its subscribers) waiting for the UDP sender (bounded by PUSH_QUEUE_MAX, 4096)."
    )
    .expect("metric registers once")
});

/// Counts one open live stream in [`LIVE_STREAMS`] until dropped.
pub struct OpenStream(&'static str);

impl OpenStream {
    pub fn new(transport: &'static str) -> Self {
        LIVE_STREAMS.with_label_values(&[transport]).inc();
        OpenStream(transport)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        LIVE_STREAMS.with_label_values(&[self.0]).dec();
    }
}

/// Registers every metric of every crate, so that each is scraped (at zero) before its
/// first observation.
pub fn register() {
    gavel_storage::metrics::register();
    gavel_raft::metrics::register();
    LazyLock::force(&HTTP_SECONDS);
    LazyLock::force(&LIVE_STREAMS);
    LazyLock::force(&WS_DROPPED);
    LazyLock::force(&RATE_LIMITED);
    LazyLock::force(&UDP_QUEUE);
}

/// Sets the gauges read at scrape time: queues, replication lag, the data dir's disk.
pub fn refresh(s: &AppState) {
    register();
    UDP_QUEUE.set(i64::try_from(s.udp.queued()).unwrap_or(i64::MAX));
    gavel_raft::metrics::refresh(&s.door);
    let dir = s.data_dir.as_deref().unwrap_or_else(|| s.log.dir());
    gavel_storage::metrics::refresh_disk(dir);
}

/// Middleware: times every request by its route pattern. A WebSocket or SSE stream is
/// timed until its response starts, not for its whole life.
pub async fn track_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    HTTP_SECONDS
        .with_label_values(&[route.as_str(), method.as_str(), resp.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Observes a bid sent over a WebSocket, which no HTTP request times.
pub fn observe_ws_bid(status: axum::http::StatusCode, took: Duration) {
    HTTP_SECONDS
        .with_label_values(&[WS_ROUTE, WS_BID_METHOD, status.as_str()])
        .observe(took.as_secs_f64());
}

/// One point of the history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Sample {
    /// End of the interval (RFC 3339).
    pub at: String,
    /// Bids applied per second over the interval (the cluster's accepted bids).
    pub bids_per_sec: f64,
    /// API requests answered by this node per second.
    pub requests_per_sec: f64,
    /// p99 of successful bids answered by this node (HTTP and WebSocket), in ms (null:
    /// none).
    pub bid_p99_ms: Option<f64>,
    /// p99 of Raft commits proposed by this node (as leader), in ms (null: none).
    pub commit_p99_ms: Option<f64>,
}

/// `GET /v1/metrics/history`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct History {
    pub node_id: u64,
    pub interval_secs: u64,
    /// Oldest first; at most 180 (15 minutes).
    pub samples: Vec<Sample>,
}

/// The samples, shared by the sampler and the route.
#[derive(Default)]
pub struct Recent(Mutex<VecDeque<Sample>>);

impl Recent {
    fn push(&self, sample: Sample) {
        let mut samples = self.0.lock().expect("history lock poisoned");
        if samples.len() == HISTORY_SAMPLES_MAX {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    fn all(&self) -> Vec<Sample> {
        self.0.lock().expect("history lock poisoned").iter().cloned().collect()
    }
}

/// Cumulative bucket counts of a histogram (or a sum of several), with their bounds.
#[derive(Debug, Clone, Default, PartialEq)]
struct Buckets {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    total: u64,
}

impl Buckets {
    fn add(&mut self, h: &prometheus::proto::Histogram) {
        let buckets = h.get_bucket();
        if self.bounds.is_empty() {
            self.bounds = buckets.iter().map(|b| b.upper_bound()).collect();
            self.counts = vec![0; buckets.len()];
        }
        for (count, b) in self.counts.iter_mut().zip(buckets) {
            *count += b.cumulative_count();
        }
        self.total += h.get_sample_count();
    }

    /// The p99 of what was observed between `earlier` and `self`, in seconds.
    fn p99_since(&self, earlier: &Buckets) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total).filter(|t| *t > 0)?;
        let rank = (total as f64 * 0.99).ceil() as u64;
        for (i, bound) in self.bounds.iter().enumerate() {
            let before = earlier.counts.get(i).copied().unwrap_or(0);
            if self.counts[i].saturating_sub(before) >= rank {
                return Some(*bound);
            }
        }
        // Beyond the last bucket: report its bound, the most that is known.
        self.bounds.last().copied()
    }
}

/// The counters one sample is a difference of.
#[derive(Debug, Clone, Default)]
struct Reading {
    bids: u64,
    requests: u64,
    bid_latency: Buckets,
    commit_latency: Buckets,
}

fn read() -> Reading {
    let mut r = Reading {
        bids: gavel_storage::metrics::APPLIED_BIDS.get(),
        ..Reading::default()
    };
    for family in HTTP_SECONDS.collect() {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            let h = m.get_histogram();
            r.requests += h.get_sample_count();
            let bid = BID_ROUTES.contains(&(label("route").as_str(), label("method").as_str()));
            if bid && label("status").starts_with('2') {
                r.bid_latency.add(h);
            }
        }
    }
    for family in gavel_raft::metrics::COMMIT_SECONDS.collect() {
        for m in family.get_metric() {
            r.commit_latency.add(m.get_histogram());
        }
    }
    r
}

fn sample(before: &Reading, now: &Reading, secs: f64) -> Sample {
    let per_sec = |a: u64, b: u64| ((b.saturating_sub(a)) as f64 / secs * 10.0).round() / 10.0;
    let ms = |s: Option<f64>| s.map(|s| (s * 1000.0 * 100.0).round() / 100.0);
    Sample {
        at: rfc3339(now_ms()),
        bids_per_sec: per_sec(before.bids, now.bids),
        requests_per_sec: per_sec(before.requests, now.requests),
        bid_p99_ms: ms(now.bid_latency.p99_since(&before.bid_latency)),
        commit_p99_ms: ms(now.commit_latency.p99_since(&before.commit_latency)),
    }
}

/// Takes a sample every [`SAMPLE_INTERVAL_SECS`] until `stop`.
pub async fn run_sampler(s: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(SAMPLE_INTERVAL_SECS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut before = (Instant::now(), read());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = (Instant::now(), read());
        let secs = now.0.duration_since(before.0).as_secs_f64().max(0.001);
        s.history.push(sample(&before.1, &now.1, secs));
        before = now;
    }
}

/// `GET /v1/metrics/history`: this node's figures over the last minutes.
#[utoipa::path(
    get,
    path = "/v1/metrics/history",
    operation_id = "metrics_history",
    tag = "operations",
    responses((status = 200, description = "This node's samples, oldest first", body = History))
)]
pub async fn history(State(s): State<AppState>) -> Response {
    Json(History {
        node_id: s.node_id,
        interval_secs: SAMPLE_INTERVAL_SECS,
        samples: s.history.all(),
    })
    .into_response()
}

/// The default registry (every crate's histograms and counters) in Prometheus text.
pub fn registry_text() -> String {
    use prometheus::Encoder;
    register();
    let mut out = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(counts: &[u64]) -> Buckets {
        Buckets {
            bounds: vec![0.001, 0.002, 0.005, 0.01],
            counts: counts.to_vec(),
            total: *counts.last().unwrap(),
        }
    }

    #[test]
    fn p99_is_the_bucket_holding_the_99th_percentile_of_the_interval() {
        let start = buckets(&[50, 90, 100, 100]);
        // 100 more: 98 under 1 ms, 1 under 5 ms, 1 under 10 ms.
        let end = buckets(&[148, 188, 199, 200]);
        assert_eq!(end.p99_since(&start), Some(0.005));
        assert_eq!(start.p99_since(&start), None, "nothing observed");
        let all_fast = buckets(&[200, 200, 200, 200]);
        assert_eq!(all_fast.p99_since(&Buckets::default()), Some(0.001));
    }
}
