//! The HTTP face of the rendezvous: one axum fallback handler that routes by
//! hand.
//!
//! Hand routing is deliberate. The v3 contract wants things a method router
//! fights: `OPTIONS` answered 204 on any path, `/` and `/health` on any
//! method, 404 (never 405) for a known path with the wrong method, and a
//! lowercase code that is not a route at all. Matching the path against the
//! Worker's patterns directly is shorter than bending a router to that.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::clock::{Clock, SystemClock};
use crate::code::{is_valid_joiner_id, Code, OsEntropy};
use crate::conn::Peer;
use crate::guard::{source_key_prefix, GuardLimits, GuessGuard};
use crate::metrics::{Gauges, Metrics, Route};
use crate::redis_store::{RedisConfig, RedisStore, StoreDown};
use crate::table::{
    AnswerError, Change, CreateError, HostError, OfferError, OfferList, SessionInfo, Table,
    TableLimits,
};
use crate::wire::{self, BodyError, JoinerSdp, NewSession};

/// Extensions advertised in `/health` so a client can detect them.
pub const EXTENSIONS: &[&str] = &[
    "long-poll",
    "answer-protection",
    "healthz",
    "readyz",
    "metrics",
];

/// Where `/health` points readers for the wire protocol.
pub const DEFAULT_DOCS_URL: &str =
    "https://github.com/happytunesai/MidiEditor_AI/tree/main/cloudflare";

/// The default plain-poll hold: below MidiEditor's 750 ms answer-poll timer
/// (with room for Qt's coarse timers, which may fire 5% early), so at most
/// one held poll per client overlaps the next.
pub const DEFAULT_HOLD_PLAIN_POLLS: Duration = Duration::from_millis(600);

/// Everything a running rendezvous can be told.
#[derive(Debug, Clone)]
pub struct Config {
    pub table: TableLimits,
    pub guard: GuardLimits,
    /// Largest request body read. The default admits the largest body the
    /// protocol itself allows: a 65,536-unit SDP whose every unit is a
    /// control character JSON-escaped to six bytes, plus room for the rest.
    pub max_body_bytes: usize,
    /// Requests held open by `?wait=` at once; past it, long-polls answer at
    /// once (a client never sees an error for it).
    pub max_waiters: usize,
    /// Longest `?wait=` honoured (the protocol's maximum is 25 s).
    pub max_wait: Duration,
    /// How long a plain poll (no `?wait=`) of `host-answer/<id>` or
    /// `joiner-offers` that would say "nothing yet" is held, answering the
    /// moment the answer or a new offer arrives. Unmodified clients such as
    /// MidiEditor poll on fixed timers (750 ms for the answer, 1000 ms for
    /// offers) and set no timeout on those requests, so a hold shorter than
    /// the timer saves the half interval a join otherwise waits for nothing,
    /// without requests piling up. Zero: plain polls answer at once. Held
    /// polls count against `max_waiters`; past it they answer at once.
    pub hold_plain_polls: Duration,
    /// Path prefix every route lives under, e.g. `/rdv`; empty for none.
    pub base_path: String,
    /// Header carrying the client address when behind a reverse proxy
    /// (e.g. `x-forwarded-for`). None: the TCP peer.
    pub client_ip_header: Option<String>,
    /// Reverse proxies in front that each append the address they received
    /// from to `client_ip_header`. The client address is the entry this
    /// many places from the right end of the list (all lines of the header
    /// joined): entries further left were written by the client itself and
    /// prove nothing. A list shorter than this means the request did not
    /// come through the proxies; then the TCP peer is used.
    pub trusted_proxies: usize,
    /// IPv6 prefix length one source stands for in every per-source limit
    /// (connections, sessions, SDP bytes, guessing).
    pub ipv6_prefix: u8,
    /// TCP connections one source may hold open; more are closed at once.
    pub max_connections_per_source: usize,
    /// The whole request head must arrive within this from when the
    /// connection is ready for it (a trickle does not extend it); also how
    /// long an idle keep-alive connection waits for its next request.
    pub header_timeout: Duration,
    /// The whole request body must arrive within this from when the
    /// handler starts reading it; else 408.
    pub body_timeout: Duration,
    /// Largest request head (request line plus headers) read; larger ones
    /// get 431, smaller limits than hyper's 8 KiB minimum are raised to it.
    pub max_header_bytes: usize,
    /// On shutdown, how long a connection with a request in a handler or a
    /// response being written may take to finish; connections owing nothing
    /// are closed at once.
    pub shutdown_grace: Duration,
    /// Serve HTTPS with these certificate files (reloaded when they
    /// change) instead of plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    pub docs_url: String,
    /// How often expired sessions are swept out of memory.
    pub sweep_interval: Duration,
    /// TCP connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection that moves no byte either way for this long is closed
    /// (longer than the longest long-poll, so those are never cut).
    pub idle_timeout: Duration,
    /// What the browser join page (`/join`) is told to use for ICE: the
    /// host's STUN/TURN list (empty on a LAN), changeable while serving.
    pub join_ice_servers: crate::join_page::JoinIce,
    /// Where sessions live. None: in this process's memory (the default and
    /// the fastest). Some: a Redis (or Valkey) shared by every instance
    /// that names it, so instances behind one load balancer serve one set
    /// of sessions and sessions survive a restart. The in-process host API
    /// ([`Rendezvous::host_open`] and the rest) works on memory only.
    pub store: Option<RedisConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            table: TableLimits::default(),
            guard: GuardLimits::default(),
            max_body_bytes: 6 * wire::MAX_SDP_UNITS + 8 * 1024,
            max_waiters: 4096,
            max_wait: Duration::from_millis(25_000),
            hold_plain_polls: DEFAULT_HOLD_PLAIN_POLLS,
            base_path: String::new(),
            client_ip_header: None,
            docs_url: DEFAULT_DOCS_URL.to_owned(),
            sweep_interval: Duration::from_secs(5),
            max_connections: 8192,
            idle_timeout: Duration::from_secs(75),
            trusted_proxies: 1,
            ipv6_prefix: 64,
            max_connections_per_source: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(5),
            tls: None,
            join_ice_servers: Default::default(),
            store: None,
        }
    }
}

impl Config {
    /// Normalises `base_path` to "" or "/segment[/segment]" with no trailing
    /// slash, the form MidiEditor produces by stripping the URL's trailing `/`.
    pub fn normalized_base_path(raw: &str) -> String {
        let t = raw.trim().trim_end_matches('/');
        if t.is_empty() {
            String::new()
        } else if t.starts_with('/') {
            t.to_owned()
        } else {
            format!("/{t}")
        }
    }
}

struct Shared {
    config: Config,
    clock: Arc<dyn Clock>,
    table: Mutex<Table>,
    guard: Mutex<GuessGuard>,
    /// The shared store when configured; then `table` and `guard` stay
    /// empty and every HTTP route goes through the store instead.
    store: Option<Arc<RedisStore>>,
    metrics: Metrics,
    /// One `Notify` per code that has long-poll waiters, removed with the
    /// last waiter, so the map is bounded by `max_waiters`.
    waiters: Mutex<HashMap<Code, Arc<Notify>>>,
    waiter_count: AtomicUsize,
    closing: AtomicBool,
    shutdown: watch::Sender<bool>,
}

/// A handle to one rendezvous: its table, limits, metrics and waiters. Cheap
/// to clone; every clone is the same rendezvous.
#[derive(Clone)]
pub struct Rendezvous {
    inner: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Table operations do not panic on any input; if something else ever
    // did while holding the lock, the data is still consistent (every
    // operation checks before it writes), so keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The answer to one request plus the route it matched, for metrics.
type Routed = (Route, Response);

impl Rendezvous {
    pub fn new(config: Config) -> Self {
        Self::with_clock(config, Arc::new(SystemClock::new()))
    }

    /// A rendezvous on a given clock: tests pass a
    /// [`ManualClock`](crate::clock::ManualClock) to drive lifetimes.
    ///
    /// # Panics
    ///
    /// When `config.store` names a Redis by a URL the client refuses, or is
    /// set outside a Tokio runtime; [`Rendezvous::try_with_clock`] reports
    /// the first instead.
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Self {
        match Self::try_with_clock(config, clock) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Rendezvous::with_clock`], with a bad store URL as an error. The
    /// store connects lazily: a Redis that is down now only makes requests
    /// answer 503 until it is up.
    pub fn try_with_clock(mut config: Config, clock: Arc<dyn Clock>) -> Result<Self, String> {
        config.base_path = Config::normalized_base_path(&config.base_path);
        let (shutdown, _) = watch::channel(false);
        let store = match &config.store {
            None => None,
            Some(rc) => Some(Arc::new(RedisStore::new(rc, config.table.clone())?)),
        };
        Ok(Rendezvous {
            inner: Arc::new(Shared {
                store,
                table: Mutex::new(Table::new(config.table.clone())),
                guard: Mutex::new(GuessGuard::new(config.guard.clone())),
                config,
                clock,
                metrics: Metrics::default(),
                waiters: Mutex::new(HashMap::new()),
                waiter_count: AtomicUsize::new(0),
                closing: AtomicBool::new(false),
                shutdown,
            }),
        })
    }

    /// Whether sessions live in a shared store rather than in memory.
    pub fn has_shared_store(&self) -> bool {
        self.inner.store.is_some()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Counts a connection closed at accept for its source's cap.
    pub(crate) fn note_connection_refused(&self) {
        self.inner.metrics.connection_refused();
    }

    /// Follows the shutdown flag (see [`Rendezvous::begin_shutdown`]).
    pub(crate) fn shutdown_watch(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Answers one request and records it in the metrics.
    pub(crate) async fn handle(&self, req: Request) -> Response {
        let started = Instant::now();
        let (route, resp) = self.dispatch(req).await;
        let status = resp.status().as_u16();
        self.inner.metrics.observe(route, status, started.elapsed());
        tracing::debug!(route = route.template(), status, "request");
        resp
    }

    /// Wakes the long-polls of sessions the table evicted to make room.
    fn wake_evicted(&self, table: &mut Table) {
        for code in table.take_evicted() {
            tracing::info!("idle or over-share session evicted to make room");
            self.wake(Change::Code(code));
        }
    }

    /// Joiner slots per session from now on (see
    /// [`Table::set_max_peers`]); `config().table.max_peers` keeps the value
    /// it started with. Used by a jam host whose peer limit changes live:
    /// its bundled rendezvous must take as many joiners as the jam does.
    pub fn set_max_peers(&self, max_peers: usize) {
        lock(&self.inner.table).set_max_peers(max_peers);
    }

    /// The joiner slot cap in force now.
    pub fn max_peers(&self) -> usize {
        lock(&self.inner.table).limits().max_peers
    }

    /// Marks the server as stopping: `/readyz` turns 503 and every long-poll
    /// returns now with what it has, so graceful shutdown is not held up.
    pub fn begin_shutdown(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.shutdown.send_replace(true);
    }

    /// [`Rendezvous::sweep`] for either store: the shared one removes a
    /// bounded batch of expired sessions and announces each on its channel.
    async fn sweep_any(&self) {
        match &self.inner.store {
            None => self.sweep(),
            Some(r) => {
                let _ = r.sweep(self.wall_now()).await;
            }
        }
    }

    /// Drops expired sessions and stale guard entries, and wakes waiters on
    /// sessions that just expired so they answer 404 promptly.
    pub fn sweep(&self) {
        let now = self.inner.clock.now();
        let dead = lock(&self.inner.table).sweep(now);
        lock(&self.inner.guard).sweep(now);
        for code in dead {
            self.wake(Change::Code(code));
        }
    }

    /// The `/metrics` page for either store. With the shared store the
    /// gauges are the store's (sessions, SDP bytes and the totals, for all
    /// instances); offers and records are not counted there (0).
    async fn metrics_any(&self) -> String {
        let Some(r) = &self.inner.store else {
            return self.metrics_text();
        };
        let st = r.stats(self.wall_now()).await.unwrap_or_default();
        self.inner.metrics.render(Gauges {
            sessions: st.sessions,
            live_offers: 0,
            records: 0,
            waiters: self.inner.waiter_count.load(Ordering::SeqCst),
            guard_tracked: 0,
            guard_locked: 0,
            sessions_expired_total: st.expired_total,
            lockouts_total: st.lockouts_total,
            sessions_evicted_total: st.evicted_total,
            sdp_bytes: st.sdp_bytes,
        })
    }

    /// The `/metrics` page of the in-memory store.
    pub fn metrics_text(&self) -> String {
        let now = self.inner.clock.now();
        let (stats, expired, evicted, sdp_bytes) = {
            let t = lock(&self.inner.table);
            (
                t.stats(),
                t.expired_total(),
                t.evicted_total(),
                t.sdp_bytes(),
            )
        };
        let (tracked, locked, lockouts) = {
            let g = lock(&self.inner.guard);
            (g.tracked(), g.locked(now), g.lockouts_total())
        };
        self.inner.metrics.render(Gauges {
            sessions: stats.sessions,
            live_offers: stats.live_offers,
            records: stats.records,
            waiters: self.inner.waiter_count.load(Ordering::SeqCst),
            guard_tracked: tracked,
            guard_locked: locked,
            sessions_expired_total: expired,
            lockouts_total: lockouts,
            sessions_evicted_total: evicted,
            sdp_bytes,
        })
    }

    // ---- In-process host API -------------------------------------------
    //
    // The desktop app is the host of its own bundled rendezvous. Polling
    // itself over HTTP would add up to a poll interval to every join, so it
    // uses the table directly, with the same rules and the same long-poll
    // wake-ups as HTTP clients.

    /// Opens a session as the in-process host (no per-source limit applies).
    /// Refused on a rendezvous with a shared store: the in-process host
    /// API works on the in-memory table only.
    pub fn host_open(
        &self,
        session_id: &str,
        display_name: &str,
        protect_answers: bool,
    ) -> Result<crate::table::Created, CreateError> {
        self.host_open_preferring(session_id, display_name, protect_answers, None)
    }

    /// [`host_open`](Self::host_open) under `prefer` when no live session
    /// holds it: a host that restarts keeps the code it had.
    pub fn host_open_preferring(
        &self,
        session_id: &str,
        display_name: &str,
        protect_answers: bool,
        prefer: Option<Code>,
    ) -> Result<crate::table::Created, CreateError> {
        let info = crate::table::SessionInfo {
            session_id: session_id.to_owned(),
            display_name: wire::truncate_utf16(display_name, wire::MAX_DISPLAY_NAME_UNITS)
                .to_owned(),
        };
        if self.inner.store.is_some() {
            return Err(CreateError::NeedsMemoryStore);
        }
        let now = self.inner.clock.now();
        let created = {
            let mut t = lock(&self.inner.table);
            let c = t.create_preferring(now, info, protect_answers, None, &mut OsEntropy, prefer);
            self.wake_evicted(&mut t);
            c
        };
        if created.is_ok() {
            self.inner.metrics.session_created();
        }
        created
    }

    /// Waits up to `wait` for offers whose joinerId is not in `seen`, and
    /// returns them (empty when the wait ended with none). Counts as a host
    /// poll, so it keeps the session alive. `None`: the session is gone.
    pub async fn host_next_offers(
        &self,
        code: Code,
        host_token: &str,
        seen: &std::collections::HashSet<String>,
        wait: Duration,
    ) -> Option<Vec<crate::table::OfferView>> {
        self.wait_for(code, wait, || {
            let now = self.inner.clock.now();
            let list = lock(&self.inner.table).list_offers(now, code, Some(host_token));
            std::future::ready(match list {
                None => (None, true),
                Some(l) => {
                    let fresh: Vec<_> = l
                        .offers
                        .into_iter()
                        .filter(|o| !seen.contains(&o.joiner_id))
                        .collect();
                    let ready = !fresh.is_empty();
                    (Some(fresh), ready)
                }
            })
        })
        .await
    }

    /// Posts the host's answer for one joiner, waking its long-poll.
    pub fn host_answer(
        &self,
        code: Code,
        host_token: &str,
        joiner_id: &str,
        sdp: String,
    ) -> Result<(), AnswerError> {
        let now = self.inner.clock.now();
        let change =
            lock(&self.inner.table).post_answer(now, code, Some(host_token), joiner_id, sdp)?;
        self.wake(change);
        Ok(())
    }

    /// Frees a departed joiner's slot (see [`Table::release`]).
    pub fn host_release(
        &self,
        code: Code,
        host_token: &str,
        joiner_id: &str,
    ) -> Result<bool, HostError> {
        let now = self.inner.clock.now();
        lock(&self.inner.table).release(now, code, Some(host_token), joiner_id)
    }

    /// Ends a session now, waking every long-poll on it.
    pub fn host_close(&self, code: Code, host_token: &str) -> Result<(), HostError> {
        let now = self.inner.clock.now();
        let change = lock(&self.inner.table).close(now, code, Some(host_token))?;
        self.wake(change);
        Ok(())
    }

    fn wake(&self, change: Change) {
        if let Change::Code(code) = change {
            if let Some(n) = lock(&self.inner.waiters).get(&code) {
                n.notify_waiters();
            }
        }
    }

    /// Wakes every local long-poll (each re-reads its state): after the
    /// store's wake-up channel was lost, announcements may have been missed.
    fn wake_all(&self) {
        for n in lock(&self.inner.waiters).values() {
            n.notify_waiters();
        }
    }

    /// `now` for the shared store: wall-clock milliseconds, the one time
    /// base every instance (and a restarted one) shares.
    fn wall_now(&self) -> crate::clock::Millis {
        crate::clock::Millis(self.inner.clock.wall_ms())
    }

    // ---- Store dispatch --------------------------------------------------
    //
    // Each HTTP route's state operation, on memory (one short lock, no
    // await) or on the shared store (one script). With the shared store the
    // scripts announce every change on the wake-up channel, which each
    // instance's follower turns into local wake-ups (this one's included).

    async fn st_lookup(&self, code: Code) -> Result<Option<SessionInfo>, StoreDown> {
        match &self.inner.store {
            None => Ok(lock(&self.inner.table).lookup(self.inner.clock.now(), code)),
            Some(r) => r.lookup(self.wall_now(), code).await,
        }
    }

    async fn st_exists(&self, code: Code) -> Result<bool, StoreDown> {
        match &self.inner.store {
            None => Ok(lock(&self.inner.table).exists(self.inner.clock.now(), code)),
            Some(r) => Ok(r.lookup(self.wall_now(), code).await?.is_some()),
        }
    }

    async fn st_check_host(
        &self,
        code: Code,
        bearer: Option<&str>,
    ) -> Result<Result<(), HostError>, StoreDown> {
        match &self.inner.store {
            None => Ok(lock(&self.inner.table).check_host(self.inner.clock.now(), code, bearer)),
            Some(r) => Ok(match r.host_check(self.wall_now(), code, bearer).await? {
                None => Err(HostError::NoSession),
                Some(h) if !h.host => Err(HostError::TokenRequired),
                Some(_) => Ok(()),
            }),
        }
    }

    async fn st_is_token_holder(
        &self,
        code: Code,
        bearer: Option<&str>,
    ) -> Result<bool, StoreDown> {
        match &self.inner.store {
            None => {
                Ok(lock(&self.inner.table).is_token_holder(self.inner.clock.now(), code, bearer))
            }
            Some(r) => {
                if bearer.is_none() {
                    return Ok(false);
                }
                Ok(r.host_check(self.wall_now(), code, bearer)
                    .await?
                    .is_some_and(|h| h.holder))
            }
        }
    }

    async fn st_list_offers(
        &self,
        code: Code,
        bearer: Option<&str>,
    ) -> Result<Option<OfferList>, StoreDown> {
        match &self.inner.store {
            None => Ok(lock(&self.inner.table).list_offers(self.inner.clock.now(), code, bearer)),
            Some(r) => r.list_offers(self.wall_now(), code, bearer).await,
        }
    }

    async fn st_answer(&self, code: Code, joiner_id: &str) -> Result<Option<String>, StoreDown> {
        match &self.inner.store {
            None => Ok(lock(&self.inner.table).answer(self.inner.clock.now(), code, joiner_id)),
            Some(r) => r.answer(self.wall_now(), code, joiner_id).await,
        }
    }

    /// Answers one request. Never fails: every outcome is a response.
    async fn dispatch(&self, req: Request) -> Routed {
        if req.method() == Method::OPTIONS {
            return (Route::Options, empty(StatusCode::NO_CONTENT));
        }
        let base = &self.inner.config.base_path;
        let path = req.uri().path();
        let Some(path) = strip_base(path, base) else {
            return not_found();
        };
        if let Some(resp) = crate::join_page::respond(path, req.method(), &self.inner.config) {
            return (Route::JoinPage, resp);
        }
        let matched = match_route(path, req.method());
        let route = matched.route();
        let source = self.source_of(&req);
        let resp = match matched {
            Matched::Health => self.health(),
            Matched::Healthz => json(StatusCode::OK, &wire::StatusBody { status: "ok" }),
            Matched::Readyz => {
                if self.inner.closing.load(Ordering::SeqCst) {
                    json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &wire::StatusBody {
                            status: "shutting down",
                        },
                    )
                } else {
                    json(StatusCode::OK, &wire::StatusBody { status: "ready" })
                }
            }
            Matched::Metrics => text(self.metrics_any().await),
            Matched::Session => self.create_session(req, source).await,
            Matched::Code(code) => self.lookup(code, source).await,
            Matched::JoinerOffer(code) => self.post_offer(code, req, source).await,
            Matched::JoinerOffers(code) => self.list_offers(code, req, source).await,
            Matched::HostAnswerPost(code) => self.post_answer(code, req, source).await,
            Matched::HostAnswerGet(code, id) => self.get_answer(code, &id, req).await,
            Matched::NotFound => not_found().1,
        };
        (route, resp)
    }

    fn health(&self) -> Response {
        json(
            StatusCode::OK,
            &wire::HealthBody {
                service: "midi-rdv",
                version: 3,
                protocol: "joiner-initiated-multi-peer",
                max_peers_per_session: self.max_peers(),
                docs: &self.inner.config.docs_url,
                extensions: EXTENSIONS,
                build: env!("CARGO_PKG_VERSION"),
            },
        )
    }

    /// The address per-source limits apply to.
    fn source_of(&self, req: &Request) -> IpAddr {
        let config = &self.inner.config;
        let from_header = config
            .client_ip_header
            .as_deref()
            .and_then(|h| forwarded_client(req.headers(), h, config.trusted_proxies));
        let peer = req
            .extensions()
            .get::<ConnectInfo<Peer>>()
            .map(|c| c.0 .0.ip());
        source_key_prefix(
            from_header
                .or(peer)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            config.ipv6_prefix,
        )
    }

    /// The guessing lockout, unless the request bears `code`'s host token:
    /// a host behind the same NAT as a guesser must keep its session.
    async fn locked_out_unless_host(
        &self,
        source: IpAddr,
        code: Code,
        bearer: Option<&str>,
    ) -> Option<Response> {
        let r = self.locked_out(source).await?;
        match self.st_is_token_holder(code, bearer).await {
            Ok(host) => (!host).then_some(r),
            Err(StoreDown) => Some(store_down()),
        }
    }

    /// The guessing lockout's refusal, if `source` is locked out (or the
    /// shared store cannot tell: then 503).
    async fn locked_out(&self, source: IpAddr) -> Option<Response> {
        let locked = match &self.inner.store {
            None => lock(&self.inner.guard).is_locked(self.inner.clock.now(), source),
            Some(r) => match r.guard_is_locked(self.wall_now(), source).await {
                Ok(l) => l,
                Err(StoreDown) => return Some(store_down()),
            },
        };
        locked.then(|| {
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many unknown codes; slow down",
            )
        })
    }

    /// Counts a failed lookup. With the shared store a failure to count
    /// is only logged: the request's own answer (404) is already right.
    async fn failed_lookup(&self, source: IpAddr) {
        let started = match &self.inner.store {
            None => lock(&self.inner.guard).record_failure(self.inner.clock.now(), source),
            Some(r) => r
                .guard_fail(self.wall_now(), source, &self.inner.config.guard)
                .await
                .unwrap_or(false),
        };
        if started {
            tracing::warn!(%source, "source locked out for guessing pairing codes");
        }
    }

    /// Reads the whole body, refusing it before it is read whole when it is
    /// over the limit (by its Content-Length if declared, else as it streams).
    async fn read_json(&self, req: Request) -> Result<Value, Response> {
        let max = self.inner.config.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            self.inner.metrics.body_refused();
            return Err(too_large());
        }
        let mut closing = self.inner.shutdown.subscribe();
        let read = tokio::select! {
            r = tokio::time::timeout(
                self.inner.config.body_timeout,
                axum::body::to_bytes(req.into_body(), max),
            ) => r,
            _ = closing.wait_for(|c| *c) => {
                return Err(error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down"));
            }
        };
        let Ok(read) = read else {
            return Err(error(StatusCode::REQUEST_TIMEOUT, "request body too slow"));
        };
        match read {
            Ok(bytes) => wire::parse_body(&bytes).map_err(body_error),
            Err(e) => {
                let too_big = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if too_big {
                    self.inner.metrics.body_refused();
                    Err(too_large())
                } else {
                    Err(error(
                        StatusCode::BAD_REQUEST,
                        "could not read request body",
                    ))
                }
            }
        }
    }

    async fn create_session(&self, req: Request, source: IpAddr) -> Response {
        let body = match self.read_json(req).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let new = match NewSession::from_json(&body) {
            Ok(n) => n,
            Err(e) => return body_error(e),
        };
        let info = SessionInfo {
            session_id: new.session_id,
            display_name: new.display_name,
        };
        let created = match &self.inner.store {
            None => {
                let now = self.inner.clock.now();
                let mut t = lock(&self.inner.table);
                let c = t.create(now, info, new.protect_answers, Some(source), &mut OsEntropy);
                self.wake_evicted(&mut t);
                c
            }
            Some(r) => {
                let c = r
                    .create(
                        self.wall_now(),
                        info,
                        new.protect_answers,
                        Some(source),
                        &mut OsEntropy,
                    )
                    .await;
                match c {
                    Ok(c) => c,
                    Err(StoreDown) => return store_down(),
                }
            }
        };
        match created {
            Ok(c) => {
                self.inner.metrics.session_created();
                tracing::info!(protected = new.protect_answers, "session opened");
                tracing::debug!(code = %c.code, "session opened");
                json(
                    StatusCode::OK,
                    &wire::CreatedBody {
                        code: c.code.as_str(),
                        expires_in_sec: self.inner.config.table.ttl.as_secs(),
                        host_token: &c.host_token,
                    },
                )
            }
            Err(CreateError::ServerFull) => {
                tracing::warn!("session refused: server at its session limit");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server is at capacity; try again later",
                )
            }
            Err(CreateError::SourceFull) => error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many sessions from this address",
            ),
            Err(CreateError::NoFreeCode) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no free code right now; try again",
            ),
            Err(CreateError::NeedsMemoryStore) => store_down(),
        }
    }

    async fn lookup(&self, code: Code, source: IpAddr) -> Response {
        if let Some(r) = self.locked_out(source).await {
            return r;
        }
        let info = match self.st_lookup(code).await {
            Ok(i) => i,
            Err(StoreDown) => return store_down(),
        };
        match info {
            Some(i) => json(
                StatusCode::OK,
                &wire::SessionBody {
                    session_id: &i.session_id,
                    display_name: &i.display_name,
                },
            ),
            None => {
                self.failed_lookup(source).await;
                error(StatusCode::NOT_FOUND, "not found or expired")
            }
        }
    }

    async fn post_offer(&self, code: Code, req: Request, source: IpAddr) -> Response {
        if let Some(r) = self.locked_out(source).await {
            return r;
        }
        // The session is checked before the body is read, as on the Worker:
        // an unknown code answers 404 whatever the body holds.
        match self.st_exists(code).await {
            Ok(true) => {}
            Ok(false) => {
                self.failed_lookup(source).await;
                return no_session();
            }
            Err(StoreDown) => return store_down(),
        }
        let body = match self.read_json(req).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let o = match JoinerSdp::from_json(&body) {
            Ok(o) => o,
            Err(e) => return body_error(e),
        };
        let wall = self.inner.clock.wall_ms();
        let r = match &self.inner.store {
            None => {
                let now = self.inner.clock.now();
                lock(&self.inner.table).post_offer_from(
                    now,
                    wall,
                    code,
                    &o.joiner_id,
                    o.sdp,
                    Some(source),
                )
            }
            Some(r) => match r
                .post_offer(
                    crate::clock::Millis(wall),
                    code,
                    &o.joiner_id,
                    &o.sdp,
                    Some(source),
                )
                .await
            {
                Ok(r) => r.map(|()| Change::None),
                Err(StoreDown) => return store_down(),
            },
        };
        match r {
            Ok(change) => {
                self.wake(change);
                ok()
            }
            Err(OfferError::NoSession) => no_session(),
            Err(OfferError::JoinerIdInUse) => error(
                StatusCode::CONFLICT,
                "joinerId already in use; pick a fresh one",
            ),
            Err(OfferError::SessionFull) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("session is full ({} peers)", self.max_peers()),
            ),
            Err(OfferError::SessionBudget) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "session holds too much SDP; try again later",
            ),
            Err(OfferError::SourceBudget) => error(
                StatusCode::TOO_MANY_REQUESTS,
                "too much SDP stored from this address",
            ),
            Err(OfferError::ServerBudget) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "server is at capacity; try again later",
            ),
        }
    }

    async fn list_offers(&self, code: Code, req: Request, source: IpAddr) -> Response {
        let bearer_owned = bearer_token(req.headers()).map(str::to_owned);
        let bearer = bearer_owned.as_deref();
        let wait = self.wait_of(&req);
        drop(req);
        if let Some(r) = self.locked_out_unless_host(source, code, bearer).await {
            return r;
        }
        let wait = match wait {
            Ok(w) => w,
            Err(BadWait) => return bad_wait(),
        };
        let this = self;
        let list = self
            .wait_for(code, wait, move || async move {
                match this.st_list_offers(code, bearer).await {
                    Ok(l) => {
                        let ready = l.as_ref().is_none_or(|l| l.has_unanswered);
                        (Ok(l), ready)
                    }
                    Err(e) => (Err(e), true),
                }
            })
            .await;
        let list = match list {
            Ok(l) => l,
            Err(StoreDown) => return store_down(),
        };
        match list {
            Some(l) => json(
                StatusCode::OK,
                &wire::OffersBody {
                    offers: l
                        .offers
                        .iter()
                        .map(|o| wire::OfferItem {
                            joiner_id: &o.joiner_id,
                            sdp: &o.sdp,
                            ts: o.ts,
                        })
                        .collect(),
                },
            ),
            None => {
                self.failed_lookup(source).await;
                no_session()
            }
        }
    }

    async fn post_answer(&self, code: Code, req: Request, source: IpAddr) -> Response {
        let bearer = bearer_token(req.headers()).map(str::to_owned);
        if let Some(r) = self
            .locked_out_unless_host(source, code, bearer.as_deref())
            .await
        {
            return r;
        }
        let checked = match self.st_check_host(code, bearer.as_deref()).await {
            Ok(c) => c,
            Err(StoreDown) => return store_down(),
        };
        match checked {
            Ok(()) => {}
            Err(HostError::NoSession) => {
                self.failed_lookup(source).await;
                return no_session();
            }
            Err(HostError::TokenRequired) => return token_required(),
        }
        let body = match self.read_json(req).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let a = match JoinerSdp::from_json(&body) {
            Ok(a) => a,
            Err(e) => return body_error(e),
        };
        let r = match &self.inner.store {
            None => {
                let now = self.inner.clock.now();
                lock(&self.inner.table).post_answer_from(
                    now,
                    code,
                    bearer.as_deref(),
                    &a.joiner_id,
                    a.sdp,
                    Some(source),
                )
            }
            Some(r) => match r
                .post_answer(
                    self.wall_now(),
                    code,
                    bearer.as_deref(),
                    &a.joiner_id,
                    &a.sdp,
                    Some(source),
                )
                .await
            {
                Ok(r) => r.map(|()| Change::None),
                Err(StoreDown) => return store_down(),
            },
        };
        match r {
            Ok(change) => {
                self.wake(change);
                ok()
            }
            Err(AnswerError::NoSession) => no_session(),
            Err(AnswerError::TokenRequired) => token_required(),
            Err(AnswerError::AlreadyPosted) => error(
                StatusCode::CONFLICT,
                "answer already posted for this joinerId",
            ),
            Err(AnswerError::TooManyRecords) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many answers stored for this session",
            ),
            Err(AnswerError::OverBudget) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too much SDP stored; try again later",
            ),
        }
    }

    async fn get_answer(&self, code: Code, joiner_id: &str, req: Request) -> Response {
        // Never rate-limited and never anything but 200/404 for a valid
        // route (bar a malformed ?wait, which MidiEditor never sends): any
        // other status would end a MidiEditor join.
        let wait = match self.wait_of(&req) {
            Ok(w) => w,
            Err(BadWait) => return bad_wait(),
        };
        let this = self;
        let answer = self
            .wait_for(code, wait, move || async move {
                match this.st_answer(code, joiner_id).await {
                    Ok(a) => {
                        let ready = a.is_some();
                        (Ok(a), ready)
                    }
                    Err(e) => (Err(e), true),
                }
            })
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(StoreDown) => return store_down(),
        };
        match answer {
            Some(sdp) => json(StatusCode::OK, &wire::SdpBody { sdp: &sdp }),
            None => error(StatusCode::NOT_FOUND, "not yet"),
        }
    }

    /// The `?wait=<ms>` of a poll. Absent means the plain-poll hold: the
    /// response is exactly the one without the extension, only possibly
    /// later (and sooner than the client's next poll would have found it).
    fn wait_of(&self, req: &Request) -> Result<Duration, BadWait> {
        let Some(raw) = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("wait=")))
        else {
            return Ok(self
                .inner
                .config
                .hold_plain_polls
                .min(self.inner.config.max_wait));
        };
        let max = self.inner.config.max_wait;
        match raw.parse::<u64>() {
            Ok(ms) => Ok(Duration::from_millis(ms).min(max)),
            // All digits but too big for u64: still just "more than the most".
            Err(_) if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(max),
            Err(_) => Err(BadWait),
        }
    }

    /// Runs `probe` now and, unless it is ready, again each time the code
    /// changes, until it is ready, `wait` has passed, or the server stops.
    /// Returns the last probe's value. When the waiter cap is reached the
    /// first probe's value is returned at once: a degraded long-poll is an
    /// ordinary poll, never an error.
    async fn wait_for<T, Fut>(
        &self,
        code: Code,
        wait: Duration,
        mut probe: impl FnMut() -> Fut,
    ) -> T
    where
        Fut: Future<Output = (T, bool)>,
    {
        let (value, ready) = probe().await;
        if ready || wait.is_zero() || self.inner.closing.load(Ordering::SeqCst) {
            return value;
        }
        let Some(slot) = WaiterSlot::take(self, code) else {
            return value;
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            let notified = slot.notify.notified();
            tokio::pin!(notified);
            // Registered before probing, so a change between the probe and
            // the await still wakes us.
            notified.as_mut().enable();
            let (value, ready) = probe().await;
            if ready {
                return value;
            }
            let done = tokio::select! {
                _ = &mut notified => false,
                _ = tokio::time::sleep_until(deadline) => true,
                _ = until_closing(&mut shutdown) => true,
            };
            if done {
                return probe().await.0;
            }
        }
    }
}

/// Resolves once the shutdown flag is set. Unlike `wait_for`, it holds no
/// borrow of the flag when done, so a future awaiting it stays `Send`.
pub(crate) async fn until_closing(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|c| *c).await;
}

/// A long-poll's claim on the waiter budget and on its code's `Notify`;
/// released on drop, including when the client goes away mid-wait.
struct WaiterSlot<'a> {
    rdv: &'a Rendezvous,
    code: Code,
    notify: Arc<Notify>,
}

impl<'a> WaiterSlot<'a> {
    fn take(rdv: &'a Rendezvous, code: Code) -> Option<Self> {
        let max = rdv.inner.config.max_waiters;
        let claimed = rdv
            .inner
            .waiter_count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !claimed {
            return None;
        }
        let notify = lock(&rdv.inner.waiters)
            .entry(code)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        Some(WaiterSlot { rdv, code, notify })
    }
}

impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.rdv.inner.waiters);
        // Two references left: the map's and ours. Then we are the last.
        if Arc::strong_count(&self.notify) == 2 {
            map.remove(&self.code);
        }
        drop(map);
        self.rdv.inner.waiter_count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The route a path and method select, before any state is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matched {
    Health,
    Healthz,
    Readyz,
    Metrics,
    Session,
    Code(Code),
    JoinerOffer(Code),
    JoinerOffers(Code),
    HostAnswerPost(Code),
    HostAnswerGet(Code, String),
    NotFound,
}

impl Matched {
    fn route(&self) -> Route {
        match self {
            Matched::Health => Route::Health,
            Matched::Healthz => Route::Healthz,
            Matched::Readyz => Route::Readyz,
            Matched::Metrics => Route::Metrics,
            Matched::Session => Route::Session,
            Matched::Code(_) => Route::Code,
            Matched::JoinerOffer(_) => Route::JoinerOffer,
            Matched::JoinerOffers(_) => Route::JoinerOffers,
            Matched::HostAnswerPost(_) => Route::HostAnswerPost,
            Matched::HostAnswerGet(..) => Route::HostAnswerGet,
            Matched::NotFound => Route::NotFound,
        }
    }
}

/// The Worker's routing table. `path` is the raw (still percent-encoded)
/// path below the base path, as `new URL(request.url).pathname` gives it.
fn match_route(path: &str, method: &Method) -> Matched {
    let get = method == Method::GET;
    let post = method == Method::POST;
    match path {
        "/" | "/health" => return Matched::Health,
        "/session" if post => return Matched::Session,
        "/healthz" if get => return Matched::Healthz,
        "/readyz" if get => return Matched::Readyz,
        "/metrics" if get => return Matched::Metrics,
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/code/") else {
        return Matched::NotFound;
    };
    let (code, tail) = rest.split_at_checked(4).unwrap_or((rest, "\u{0}"));
    let Some(code) = Code::parse_route(code) else {
        return Matched::NotFound;
    };
    match tail {
        "" if get => Matched::Code(code),
        "/joiner-offer" if post => Matched::JoinerOffer(code),
        "/joiner-offers" if get => Matched::JoinerOffers(code),
        "/host-answer" if post => Matched::HostAnswerPost(code),
        _ => match tail.strip_prefix("/host-answer/") {
            Some(id) if get && is_valid_joiner_id(id) => {
                Matched::HostAnswerGet(code, id.to_owned())
            }
            _ => Matched::NotFound,
        },
    }
}

/// The path below `base`, or None when the request is outside it.
fn strip_base<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    if base.is_empty() {
        return Some(path);
    }
    match path.strip_prefix(base)? {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client address a chain of `trusted` reverse proxies reported in
/// header `name`: every line of the header joined (a proxy may append a
/// line instead of extending the last), then the entry `trusted` places
/// from the right. None when the list is shorter (the request bypassed the
/// proxies) or that entry is not an address.
fn forwarded_client(headers: &HeaderMap, name: &str, trusted: usize) -> Option<IpAddr> {
    let entries: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let i = entries.len().checked_sub(trusted.max(1))?;
    parse_forwarded_addr(entries[i])
}

/// An address as proxies write it: bare, `[v6]`, or with a port.
fn parse_forwarded_addr(raw: &str) -> Option<IpAddr> {
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(ip);
    }
    raw.parse::<SocketAddr>().ok().map(|a| a.ip()).or_else(|| {
        raw.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|r| r.parse().ok())
    })
}

fn cors(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    cors(&mut r);
    r
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    // Serialising these plain structs cannot fail; the fallback keeps even
    // an impossible failure a JSON answer.
    let bytes =
        serde_json::to_vec(body).unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec());
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    cors(&mut r);
    r
}

fn text(body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    cors(&mut r);
    r
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &wire::ErrorBody { error: message })
}

fn ok() -> Response {
    json(StatusCode::OK, &wire::OkBody { ok: true })
}

fn not_found() -> Routed {
    (Route::NotFound, error(StatusCode::NOT_FOUND, "not found"))
}

fn no_session() -> Response {
    error(StatusCode::NOT_FOUND, "no session for code")
}

fn token_required() -> Response {
    error(StatusCode::FORBIDDEN, "host token required")
}

fn too_large() -> Response {
    error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
}

/// A `?wait=` that is not a number of milliseconds.
struct BadWait;

fn bad_wait() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid wait: expected milliseconds, 0 to 25000",
    )
}

/// The shared store did not answer in time (or at all): a clear, retryable
/// refusal, JSON with CORS like every other error.
fn store_down() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "session store unavailable; try again",
    )
}

fn body_error(e: BodyError) -> Response {
    error(StatusCode::BAD_REQUEST, e.message())
}

async fn handle(State(rdv): State<Rendezvous>, req: Request) -> Response {
    rdv.handle(req).await
}

/// The rendezvous as an axum router, for embedding or for in-process tests.
pub fn router(rdv: Rendezvous) -> Router {
    Router::new().fallback(handle).with_state(rdv)
}

/// Serves `rdv` on `listener` until `shutdown` resolves, then stops taking
/// connections, releases long-polls, and returns once in-flight requests are
/// answered.
pub async fn serve(
    listener: TcpListener,
    rdv: Rendezvous,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweeper = {
        let rdv = rdv.clone();
        let mut closing = rdv.inner.shutdown.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(rdv.inner.config.sweep_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => rdv.sweep_any().await,
                    _ = until_closing(&mut closing) => break,
                }
            }
        })
    };
    let on_signal = {
        let rdv = rdv.clone();
        async move {
            shutdown.await;
            rdv.begin_shutdown();
        }
    };
    let signal = tokio::spawn(on_signal);
    let follower = rdv.inner.store.clone().map(|store| {
        let (wake, all) = (rdv.clone(), rdv.clone());
        tokio::spawn(crate::redis_store::follow_wakeups(
            store,
            rdv.inner.shutdown.subscribe(),
            move |code| wake.wake(Change::Code(code)),
            move || all.wake_all(),
        ))
    });
    let result = crate::accept::run(listener, rdv.clone()).await;
    signal.abort();
    rdv.begin_shutdown();
    let _ = sweeper.await;
    if let Some(f) = follower {
        f.abort();
    }
    result
}

/// A rendezvous serving on a real port in the background: what the desktop
/// app and the tests run.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub rdv: Rendezvous,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Binds `bind` (port 0 picks a free port) and starts serving.
    pub async fn start(bind: SocketAddr, rdv: Rendezvous) -> std::io::Result<RunningServer> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, rdv.clone(), async move {
            let _ = rx.await;
        }));
        Ok(RunningServer {
            addr,
            rdv,
            stop: Some(tx),
            task,
        })
    }

    /// `http://addr` plus the base path: what a client uses as its URL.
    pub fn url(&self) -> String {
        let scheme = if self.rdv.config().tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{}", self.addr, self.rdv.config().base_path)
    }

    /// Graceful stop; returns when every in-flight request is answered.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> Code {
        Code::parse_route(s).unwrap()
    }

    #[test]
    fn routes_match_the_worker_patterns() {
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(match_route("/", &Method::DELETE), Matched::Health);
        assert_eq!(match_route("/health", &Method::PUT), Matched::Health);
        assert_eq!(match_route("/health/", &g), Matched::NotFound);
        assert_eq!(match_route("/session", &p), Matched::Session);
        assert_eq!(match_route("/session", &g), Matched::NotFound);
        assert_eq!(match_route("/code/AB12", &g), Matched::Code(code("AB12")));
        assert_eq!(match_route("/code/AB12", &p), Matched::NotFound);
        assert_eq!(match_route("/code/ab12", &g), Matched::NotFound);
        assert_eq!(match_route("/code/AB1", &g), Matched::NotFound);
        assert_eq!(match_route("/code/AB123", &g), Matched::NotFound);
        assert_eq!(
            match_route("/code/AB12/joiner-offer", &p),
            Matched::JoinerOffer(code("AB12"))
        );
        assert_eq!(
            match_route("/code/AB12/joiner-offer", &g),
            Matched::NotFound
        );
        assert_eq!(
            match_route("/code/AB12/joiner-offers", &g),
            Matched::JoinerOffers(code("AB12"))
        );
        assert_eq!(
            match_route("/code/AB12/host-answer", &p),
            Matched::HostAnswerPost(code("AB12"))
        );
        assert_eq!(
            match_route("/code/AB12/host-answer/abcd-1234", &g),
            Matched::HostAnswerGet(code("AB12"), "abcd-1234".into())
        );
        assert_eq!(
            match_route("/code/AB12/host-answer/short", &g),
            Matched::NotFound
        );
        assert_eq!(
            match_route("/code/AB12/host-answer/abcd-1234", &p),
            Matched::NotFound
        );
        assert_eq!(match_route("/code/ÄB12", &g), Matched::NotFound);
        assert_eq!(match_route("/code/", &g), Matched::NotFound);
    }

    #[test]
    fn base_path_is_stripped_only_at_a_segment_boundary() {
        assert_eq!(strip_base("/rdv/health", "/rdv"), Some("/health"));
        assert_eq!(strip_base("/rdv", "/rdv"), Some("/"));
        assert_eq!(strip_base("/rdvx/health", "/rdv"), None);
        assert_eq!(strip_base("/health", "/rdv"), None);
        assert_eq!(strip_base("/health", ""), Some("/health"));
        assert_eq!(Config::normalized_base_path("rdv/"), "/rdv");
        assert_eq!(Config::normalized_base_path("/"), "");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
    }
}
