//! Prometheus metrics, written by hand: a dozen series do not justify a
//! metrics framework. Labels are route templates and status codes only,
//! never a code or a joinerId, so the label set is fixed and small and the
//! metrics page leaks nothing about live sessions.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// The route a request matched, as it appears in labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    Options,
    Health,
    Session,
    Code,
    JoinerOffer,
    JoinerOffers,
    HostAnswerPost,
    HostAnswerGet,
    Healthz,
    Readyz,
    Metrics,
    /// The browser join page and its files (`/join...`).
    JoinPage,
    NotFound,
}

impl Route {
    pub fn template(self) -> &'static str {
        match self {
            Route::Options => "OPTIONS *",
            Route::Health => "/health",
            Route::Session => "POST /session",
            Route::Code => "GET /code/{code}",
            Route::JoinerOffer => "POST /code/{code}/joiner-offer",
            Route::JoinerOffers => "GET /code/{code}/joiner-offers",
            Route::HostAnswerPost => "POST /code/{code}/host-answer",
            Route::HostAnswerGet => "GET /code/{code}/host-answer/{joinerId}",
            Route::Healthz => "GET /healthz",
            Route::Readyz => "GET /readyz",
            Route::Metrics => "GET /metrics",
            Route::JoinPage => "GET /join",
            Route::NotFound => "unmatched",
        }
    }
}

/// Upper bounds of the latency histogram, in seconds. Long-polls land in the
/// top buckets, which is why they reach 30 s.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(Route, u16), u64>,
    latency: BTreeMap<Route, Histogram>,
    sessions_created: u64,
    bodies_refused: u64,
    connections_refused: u64,
}

/// Counters owned by the server. Gauges (live sessions and the like) are
/// read from the table at scrape time and passed to [`Metrics::render`].
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Values read from elsewhere at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    pub sessions: usize,
    pub live_offers: usize,
    pub records: usize,
    pub waiters: usize,
    pub guard_tracked: usize,
    pub guard_locked: usize,
    pub sessions_expired_total: u64,
    pub lockouts_total: u64,
    /// Sessions evicted to make room when the table was full.
    pub sessions_evicted_total: u64,
    /// SDP bytes stored now.
    pub sdp_bytes: usize,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A panic elsewhere cannot leave counters inconsistent in a way that
        // matters, so a poisoned lock is simply taken over.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn observe(&self, route: Route, status: u16, elapsed: Duration) {
        self.with(|m| {
            *m.requests.entry((route, status)).or_insert(0) += 1;
            let h = m.latency.entry(route).or_default();
            let secs = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        });
    }

    pub fn session_created(&self) {
        self.with(|m| m.sessions_created += 1);
    }

    pub fn body_refused(&self) {
        self.with(|m| m.bodies_refused += 1);
    }

    /// A connection closed at accept: its source was at its cap.
    pub fn connection_refused(&self) {
        self.with(|m| m.connections_refused += 1);
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self, g: Gauges) -> String {
        let m = self.with(|m| {
            (
                m.requests.clone(),
                m.latency.clone(),
                m.sessions_created,
                m.bodies_refused,
                m.connections_refused,
            )
        });
        let (requests, latency, created, refused, conns_refused) = m;
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP rdv_requests_total HTTP requests by route template and status."
        );
        let _ = writeln!(out, "# TYPE rdv_requests_total counter");
        for ((route, status), n) in &requests {
            let _ = writeln!(
                out,
                "rdv_requests_total{{route=\"{}\",status=\"{}\"}} {}",
                route.template(),
                status,
                n
            );
        }
        let _ = writeln!(out, "# HELP rdv_request_duration_seconds Time to answer, by route template (long-polls included).");
        let _ = writeln!(out, "# TYPE rdv_request_duration_seconds histogram");
        for (route, h) in &latency {
            let t = route.template();
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "rdv_request_duration_seconds_bucket{{route=\"{t}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "rdv_request_duration_seconds_bucket{{route=\"{t}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "rdv_request_duration_seconds_sum{{route=\"{t}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "rdv_request_duration_seconds_count{{route=\"{t}\"}} {}",
                h.count
            );
        }
        let scalar = |out: &mut String, name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {v}");
        };
        scalar(
            &mut out,
            "rdv_sessions_created_total",
            "counter",
            "Sessions opened.",
            created.to_string(),
        );
        scalar(
            &mut out,
            "rdv_sessions_expired_total",
            "counter",
            "Sessions that lapsed after their host went quiet.",
            g.sessions_expired_total.to_string(),
        );
        scalar(
            &mut out,
            "rdv_sessions",
            "gauge",
            "Live sessions.",
            g.sessions.to_string(),
        );
        scalar(
            &mut out,
            "rdv_live_offers",
            "gauge",
            "Joiners holding a slot (live offers).",
            g.live_offers.to_string(),
        );
        scalar(
            &mut out,
            "rdv_joiner_records",
            "gauge",
            "Stored joiner records (offers and answers).",
            g.records.to_string(),
        );
        scalar(
            &mut out,
            "rdv_longpoll_waiters",
            "gauge",
            "Requests held open by ?wait=.",
            g.waiters.to_string(),
        );
        scalar(
            &mut out,
            "rdv_bodies_refused_total",
            "counter",
            "Request bodies refused for size before being read whole.",
            refused.to_string(),
        );
        scalar(
            &mut out,
            "rdv_guess_sources_tracked",
            "gauge",
            "Sources with recent failed code lookups.",
            g.guard_tracked.to_string(),
        );
        scalar(
            &mut out,
            "rdv_guess_sources_locked",
            "gauge",
            "Sources currently refused code lookups.",
            g.guard_locked.to_string(),
        );
        scalar(
            &mut out,
            "rdv_guess_lockouts_total",
            "counter",
            "Lockouts started for guessing codes.",
            g.lockouts_total.to_string(),
        );
        scalar(
            &mut out,
            "rdv_sessions_evicted_total",
            "counter",
            "Idle or over-share sessions evicted to make room for a new one.",
            g.sessions_evicted_total.to_string(),
        );
        scalar(
            &mut out,
            "rdv_sdp_bytes",
            "gauge",
            "SDP bytes stored (offers and answers).",
            g.sdp_bytes.to_string(),
        );
        scalar(
            &mut out,
            "rdv_connections_refused_total",
            "counter",
            "Connections closed at accept because their source was at its connection cap.",
            conns_refused.to_string(),
        );
        out
    }
}
