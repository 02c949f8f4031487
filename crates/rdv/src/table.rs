//! The session table: every rule of the v3 rendezvous that is about state,
//! with no I/O. Each operation takes the current [`Millis`] explicitly, so
//! lifetimes are tested by moving a number, not by sleeping.
//!
//! The table is meant to sit behind one mutex; every operation is short and
//! does all of its checks and its write in one call. That is what makes code
//! allocation, the slot cap and the no-overwrite (409) rules atomic under
//! concurrent requests, which the Worker's key-value store could not offer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Millis;
use crate::code::{constant_time_eq, new_host_token, Code, Entropy};

/// The bounds the table enforces. Every map and list it owns is capped by one
/// of these.
#[derive(Debug, Clone)]
pub struct TableLimits {
    /// Lifetime of a session after its last host activity, and of each offer
    /// and answer after its write.
    pub ttl: Duration,
    /// Live sessions on the whole server.
    pub max_sessions: usize,
    /// Live sessions opened from one source (IPv4 address or IPv6 /64).
    pub max_sessions_per_source: usize,
    /// Joiners with a live offer in one session (the protocol's slot cap).
    pub max_peers: usize,
    /// Joiner records (live offers plus answers whose offer already expired)
    /// in one session: bounds what a host posting answers for made-up
    /// joinerIds can store.
    pub max_records_per_session: usize,
    /// SDP bytes (offers plus answers) one session may hold. Never less
    /// than 32 KiB per joiner slot, so raising `max_peers` raises it too.
    pub max_sdp_bytes_per_session: usize,
    /// SDP bytes stored on behalf of one source (IPv4 address or IPv6
    /// prefix) across all sessions: what one address can make the server
    /// hold, whatever number of sessions it spreads it over.
    pub max_sdp_bytes_per_source: usize,
    /// SDP bytes stored on the whole server.
    pub max_sdp_bytes_total: usize,
    /// A session whose host has not polled (or answered) for this long is
    /// idle: when the session cap is reached, idle sessions are evicted
    /// first to make room for a new one.
    pub idle_after: Duration,
}

impl Default for TableLimits {
    fn default() -> Self {
        TableLimits {
            ttl: Duration::from_secs(300),
            max_sessions: 10_000,
            max_sessions_per_source: 64,
            max_peers: 8,
            max_records_per_session: 32,
            max_sdp_bytes_per_session: 1024 * 1024,
            max_sdp_bytes_per_source: 16 * 1024 * 1024,
            max_sdp_bytes_total: 256 * 1024 * 1024,
            idle_after: Duration::from_secs(60),
        }
    }
}

impl TableLimits {
    /// The per-session SDP budget in force: the configured one, but never
    /// less than 32 KiB per slot (an offer and an answer of a large SDP).
    pub fn session_sdp_budget(&self) -> usize {
        self.max_sdp_bytes_per_session
            .max(self.max_peers.saturating_mul(32 * 1024))
    }
}

/// What the host announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub session_id: String,
    pub display_name: String,
}

/// One joiner's offer as the host's poll lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferView {
    pub joiner_id: String,
    pub sdp: String,
    /// Wall-clock milliseconds since the epoch when the offer arrived.
    pub ts: u64,
}

/// The host's poll result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferList {
    /// Live offers in arrival order, answered ones included (the host
    /// filters locally, as with the Worker).
    pub offers: Vec<OfferView>,
    /// Whether any listed offer is still waiting for an answer; a long-poll
    /// returns at once when it is.
    pub has_unanswered: bool,
}

/// A new session.
#[derive(Debug, Clone)]
pub struct Created {
    pub code: Code,
    pub host_token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    #[error("the server has reached its session limit")]
    ServerFull,
    #[error("this source has reached its session limit")]
    SourceFull,
    #[error("no free code found")]
    NoFreeCode,
    /// The in-process host API was used on a rendezvous whose sessions
    /// live in a shared store: it works on the in-memory table only.
    #[error("the in-process host needs the in-memory store")]
    NeedsMemoryStore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("no session for code")]
    NoSession,
    #[error("joinerId already in use")]
    JoinerIdInUse,
    #[error("session is full")]
    SessionFull,
    #[error("this session holds too much SDP")]
    SessionBudget,
    #[error("this source has stored too much SDP")]
    SourceBudget,
    #[error("the server holds too much SDP")]
    ServerBudget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("no session for code")]
    NoSession,
    #[error("host token required")]
    TokenRequired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("no session for code")]
    NoSession,
    #[error("host token required")]
    TokenRequired,
    #[error("answer already posted")]
    AlreadyPosted,
    #[error("too many answers stored for this session")]
    TooManyRecords,
    #[error("too much SDP stored")]
    OverBudget,
}

/// What changed, so the async layer knows whom to wake. The table itself
/// never blocks or notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Something a waiter on this code may be waiting for happened.
    Code(Code),
}

/// Bytes of SDP stored, in total and per source. Shared by every stored
/// SDP ([`Timed`]), which credits it when created and debits it when
/// dropped, so the counts are right however a record goes away (expiry,
/// release, eviction, close).
#[derive(Debug, Default)]
struct Ledger {
    total: AtomicUsize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
}

impl Ledger {
    fn per_source(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_source.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn source_bytes(&self, source: IpAddr) -> usize {
        self.per_source().get(&source).copied().unwrap_or(0)
    }
}

#[derive(Debug)]
struct Timed {
    sdp: String,
    expires: Millis,
    source: Option<IpAddr>,
    ledger: Arc<Ledger>,
}

impl Timed {
    fn new(ledger: &Arc<Ledger>, sdp: String, expires: Millis, source: Option<IpAddr>) -> Timed {
        ledger.total.fetch_add(sdp.len(), Ordering::Relaxed);
        if let Some(src) = source {
            *ledger.per_source().entry(src).or_insert(0) += sdp.len();
        }
        Timed {
            sdp,
            expires,
            source,
            ledger: ledger.clone(),
        }
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        let n = self.sdp.len();
        self.ledger.total.fetch_sub(n, Ordering::Relaxed);
        if let Some(src) = self.source {
            let mut map = self.ledger.per_source();
            if let Some(v) = map.get_mut(&src) {
                *v = v.saturating_sub(n);
                if *v == 0 {
                    map.remove(&src);
                }
            }
        }
    }
}

#[derive(Debug)]
struct Joiner {
    id: String,
    /// Offer SDP, its arrival wall time, and when it lapses.
    offer: Option<(Timed, u64)>,
    answer: Option<Timed>,
}

#[derive(Debug)]
struct Session {
    info: SessionInfo,
    host_token: String,
    protect_answers: bool,
    source: Option<IpAddr>,
    expires: Millis,
    /// The host's last poll or answer (or the creation): how eviction tells
    /// a session someone still runs from an abandoned one.
    last_host: Millis,
    /// Records in arrival order of their current offer.
    joiners: Vec<Joiner>,
}

impl Session {
    /// Drops offers and answers whose lifetime is over, and records left with
    /// neither.
    fn purge(&mut self, now: Millis) {
        for j in &mut self.joiners {
            if j.offer.as_ref().is_some_and(|(t, _)| t.expires <= now) {
                j.offer = None;
            }
            if j.answer.as_ref().is_some_and(|t| t.expires <= now) {
                j.answer = None;
            }
        }
        self.joiners
            .retain(|j| j.offer.is_some() || j.answer.is_some());
    }

    fn sdp_bytes(&self) -> usize {
        self.joiners
            .iter()
            .map(|j| {
                j.offer.as_ref().map_or(0, |(t, _)| t.sdp.len())
                    + j.answer.as_ref().map_or(0, |t| t.sdp.len())
            })
            .sum()
    }

    fn live_offers(&self) -> usize {
        self.joiners.iter().filter(|j| j.offer.is_some()).count()
    }

    /// True when `bearer` may act as this session's host. Unprotected
    /// sessions cannot tell their host apart, so anyone may, whatever
    /// Authorization header a proxy or client happens to add.
    fn is_host(&self, bearer: Option<&str>) -> bool {
        !self.protect_answers
            || bearer.is_some_and(|t| constant_time_eq(t.as_bytes(), self.host_token.as_bytes()))
    }

    fn authorise_host(&self, bearer: Option<&str>) -> Result<(), HostError> {
        if self.is_host(bearer) {
            Ok(())
        } else {
            Err(HostError::TokenRequired)
        }
    }
}

/// Statistics for `/metrics`, computed on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    pub sessions: usize,
    pub live_offers: usize,
    pub records: usize,
}

/// The table of live sessions.
#[derive(Debug)]
pub struct Table {
    limits: TableLimits,
    sessions: HashMap<Code, Session>,
    per_source: HashMap<IpAddr, usize>,
    /// Sessions that expired (as opposed to being dropped by the server);
    /// read by metrics.
    expired_total: u64,
    ledger: Arc<Ledger>,
    /// Sessions evicted to make room, not yet handed to the server (which
    /// wakes their long-polls); at most one per create.
    evicted: Vec<Code>,
    evicted_total: u64,
}

impl Table {
    pub fn new(limits: TableLimits) -> Self {
        Table {
            limits,
            sessions: HashMap::new(),
            per_source: HashMap::new(),
            expired_total: 0,
            ledger: Arc::new(Ledger::default()),
            evicted: Vec::new(),
            evicted_total: 0,
        }
    }

    /// Codes of sessions evicted since the last call (so their waiters can
    /// be woken).
    pub fn take_evicted(&mut self) -> Vec<Code> {
        std::mem::take(&mut self.evicted)
    }

    /// Sessions evicted to make room for new ones, ever.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// SDP bytes stored on the whole server.
    pub fn sdp_bytes(&self) -> usize {
        self.ledger.total.load(Ordering::Relaxed)
    }

    /// Whether `bearer` is this live session's host token (protected or
    /// not): such a caller is the host, whom the guessing lockout exempts.
    pub fn is_token_holder(&mut self, now: Millis, code: Code, bearer: Option<&str>) -> bool {
        let Some(bearer) = bearer else {
            return false;
        };
        self.live(now, code)
            .is_some_and(|s| constant_time_eq(bearer.as_bytes(), s.host_token.as_bytes()))
    }

    /// The session to drop so that `creator` can open one when the table is
    /// full, if any may go. First choice: the longest idle session (no host
    /// poll for `idle_after`). Else a session of the source holding the most
    /// sessions, its least recently polled one, but only if that source
    /// holds at least two more than `creator` does: a host that keeps
    /// polling its one session is never the one that makes room, and nobody
    /// is refused while somebody else holds a bigger share.
    fn eviction_victim(&self, now: Millis, creator: Option<IpAddr>) -> Option<Code> {
        let idle_before = now.0.checked_sub(self.limits.idle_after.as_millis() as u64);
        let idle = self
            .sessions
            .iter()
            .filter(|(_, s)| idle_before.is_some_and(|t| s.last_host.0 <= t))
            .min_by_key(|(_, s)| s.last_host)
            .map(|(c, _)| *c);
        if idle.is_some() {
            return idle;
        }
        let mine = creator
            .and_then(|c| self.per_source.get(&c).copied())
            .unwrap_or(0);
        let (big, held) = self
            .per_source
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(s, n)| (*s, *n))?;
        if held < mine + 2 {
            return None;
        }
        self.sessions
            .iter()
            .filter(|(_, s)| s.source == Some(big))
            .min_by_key(|(_, s)| s.last_host)
            .map(|(c, _)| *c)
    }

    pub fn limits(&self) -> &TableLimits {
        &self.limits
    }

    /// Changes the per-session joiner slot cap from now on. A hosted jam's
    /// own rendezvous follows the host's peer limit, which can change while
    /// peers are in: offers already stored stay, the next one is checked
    /// against the new cap. The record bound grows with it (never below
    /// four records per slot, the ratio `midi-rdv serve` uses).
    pub fn set_max_peers(&mut self, max_peers: usize) {
        let max_peers = max_peers.max(1);
        self.limits.max_peers = max_peers;
        self.limits.max_records_per_session = self
            .limits
            .max_records_per_session
            .max(max_peers.saturating_mul(4));
    }

    /// Returns the live session for `code`, removing it first if its lifetime
    /// is over, and purging its expired records.
    fn live(&mut self, now: Millis, code: Code) -> Option<&mut Session> {
        let expired = self.sessions.get(&code).is_some_and(|s| s.expires <= now);
        if expired {
            self.remove(code);
            self.expired_total += 1;
            return None;
        }
        let s = self.sessions.get_mut(&code)?;
        s.purge(now);
        Some(s)
    }

    fn remove(&mut self, code: Code) {
        if let Some(s) = self.sessions.remove(&code) {
            if let Some(src) = s.source {
                if let Some(n) = self.per_source.get_mut(&src) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.per_source.remove(&src);
                    }
                }
            }
        }
    }

    /// `POST /session`. Allocates a fresh code (re-rolled on collision with a
    /// live session) and a host token. `source` is the already-grouped
    /// client address, used for the per-source cap.
    pub fn create(
        &mut self,
        now: Millis,
        info: SessionInfo,
        protect_answers: bool,
        source: Option<IpAddr>,
        entropy: &mut dyn Entropy,
    ) -> Result<Created, CreateError> {
        self.create_preferring(now, info, protect_answers, source, entropy, None)
    }

    /// [`create`](Self::create), taking `prefer` as the code when no live
    /// session holds it (a fresh one is drawn otherwise). Only the
    /// in-process host asks for a code: a jam that restarts (another song,
    /// another name) keeps the code its people were told. Never offered
    /// over HTTP, where choosing a code would let a client sit on one.
    pub fn create_preferring(
        &mut self,
        now: Millis,
        info: SessionInfo,
        protect_answers: bool,
        source: Option<IpAddr>,
        entropy: &mut dyn Entropy,
        prefer: Option<Code>,
    ) -> Result<Created, CreateError> {
        if self.sessions.len() >= self.limits.max_sessions {
            // Expired sessions may still occupy room until the sweep; make
            // sure the cap counts live ones only before refusing.
            self.sweep(now);
            if self.sessions.len() >= self.limits.max_sessions {
                let victim = self
                    .eviction_victim(now, source)
                    .ok_or(CreateError::ServerFull)?;
                self.remove(victim);
                self.evicted.push(victim);
                self.evicted_total += 1;
            }
        }
        if let Some(src) = source {
            if self.per_source.get(&src).copied().unwrap_or(0)
                >= self.limits.max_sessions_per_source
            {
                self.sweep(now);
                if self.per_source.get(&src).copied().unwrap_or(0)
                    >= self.limits.max_sessions_per_source
                {
                    return Err(CreateError::SourceFull);
                }
            }
        }
        // With at most `max_sessions` of 923,521 codes taken, 64 draws all
        // colliding is practically impossible unless the table is nearly
        // full, and then refusing is the right answer.
        let mut code = prefer.filter(|c| self.live(now, *c).is_none());
        for _ in 0..64 {
            if code.is_some() {
                break;
            }
            let c = crate::code::random_code(entropy);
            if self.live(now, c).is_none() {
                code = Some(c);
                break;
            }
        }
        let code = code.ok_or(CreateError::NoFreeCode)?;
        let host_token = new_host_token(entropy);
        self.sessions.insert(
            code,
            Session {
                info,
                host_token: host_token.clone(),
                protect_answers,
                source,
                expires: now.after(self.limits.ttl),
                last_host: now,
                joiners: Vec::new(),
            },
        );
        if let Some(src) = source {
            *self.per_source.entry(src).or_insert(0) += 1;
        }
        Ok(Created { code, host_token })
    }

    /// `GET /code/<c>`: the joiner's check that a code is live. Does not
    /// extend the session: only the host keeps it alive.
    pub fn lookup(&mut self, now: Millis, code: Code) -> Option<SessionInfo> {
        self.live(now, code).map(|s| s.info.clone())
    }

    /// Whether `code` names a live session (the first check of every route
    /// that reads a body, made before the body is read).
    pub fn exists(&mut self, now: Millis, code: Code) -> bool {
        self.live(now, code).is_some()
    }

    /// The checks `POST host-answer` makes before its body is looked at:
    /// the session exists (404), and, for a protected session, the caller
    /// holds the host token (403).
    pub fn check_host(
        &mut self,
        now: Millis,
        code: Code,
        bearer: Option<&str>,
    ) -> Result<(), HostError> {
        self.live(now, code)
            .ok_or(HostError::NoSession)?
            .authorise_host(bearer)
    }

    /// `POST joiner-offer`, after the body was validated. The 409 check comes
    /// before the slot check, as on the Worker; the slot cap counts live
    /// offers only, so a joiner whose offer lapsed frees its slot.
    pub fn post_offer(
        &mut self,
        now: Millis,
        wall_ms: u64,
        code: Code,
        joiner_id: &str,
        sdp: String,
    ) -> Result<Change, OfferError> {
        self.post_offer_from(now, wall_ms, code, joiner_id, sdp, None)
    }

    /// [`Table::post_offer`] on behalf of `source` (the already-grouped
    /// client address), whose stored SDP counts against its byte budget.
    /// The budgets are checked after the 409 and slot checks, so a client
    /// sees the protocol's own answers first.
    pub fn post_offer_from(
        &mut self,
        now: Millis,
        wall_ms: u64,
        code: Code,
        joiner_id: &str,
        sdp: String,
        source: Option<IpAddr>,
    ) -> Result<Change, OfferError> {
        let ttl = self.limits.ttl;
        let max_peers = self.limits.max_peers;
        let max_records = self.limits.max_records_per_session.max(max_peers);
        let session_budget = self.limits.session_sdp_budget();
        let source_budget = self.limits.max_sdp_bytes_per_source;
        let total_budget = self.limits.max_sdp_bytes_total;
        let ledger = self.ledger.clone();
        let s = self.live(now, code).ok_or(OfferError::NoSession)?;
        let pos = s.joiners.iter().position(|j| j.id == joiner_id);
        if pos.is_some_and(|i| s.joiners[i].offer.is_some()) {
            return Err(OfferError::JoinerIdInUse);
        }
        if s.live_offers() >= max_peers {
            return Err(OfferError::SessionFull);
        }
        let n = sdp.len();
        if s.sdp_bytes().saturating_add(n) > session_budget {
            return Err(OfferError::SessionBudget);
        }
        if source.is_some_and(|src| ledger.source_bytes(src).saturating_add(n) > source_budget) {
            return Err(OfferError::SourceBudget);
        }
        if ledger.total.load(Ordering::Relaxed).saturating_add(n) > total_budget {
            return Err(OfferError::ServerBudget);
        }
        let offer = Some((Timed::new(&ledger, sdp, now.after(ttl), source), wall_ms));
        // A record without an offer only holds an answer; it moves to the end
        // because the list is ordered by the arrival of the current offer.
        let mut joiner = match pos {
            Some(i) => s.joiners.remove(i),
            None => Joiner {
                id: joiner_id.to_owned(),
                offer: None,
                answer: None,
            },
        };
        joiner.offer = offer;
        if s.joiners.len() >= max_records {
            // Only answer-only records can be in excess (live offers are
            // below max_peers <= max_records): drop the oldest of them.
            if let Some(i) = s.joiners.iter().position(|j| j.offer.is_none()) {
                s.joiners.remove(i);
            }
        }
        s.joiners.push(joiner);
        Ok(Change::Code(code))
    }

    /// `GET joiner-offers`. A poll by the host renews the session: that is
    /// the sliding lifetime that keeps a MidiEditor host's hour-long session
    /// alive. In a protected session only a poll bearing the host token
    /// renews, so a stranger who knows the code cannot keep it alive.
    pub fn list_offers(
        &mut self,
        now: Millis,
        code: Code,
        bearer: Option<&str>,
    ) -> Option<OfferList> {
        let ttl = self.limits.ttl;
        let s = self.live(now, code)?;
        if s.is_host(bearer) {
            s.expires = now.after(ttl);
            s.last_host = now;
        }
        let mut has_unanswered = false;
        let offers = s
            .joiners
            .iter()
            .filter_map(|j| {
                let (t, ts) = j.offer.as_ref()?;
                has_unanswered |= j.answer.is_none();
                Some(OfferView {
                    joiner_id: j.id.clone(),
                    sdp: t.sdp.clone(),
                    ts: *ts,
                })
            })
            .collect();
        Some(OfferList {
            offers,
            has_unanswered,
        })
    }

    /// `POST host-answer`, after the body was validated. Never overwrites an
    /// answer (409): that is what stops a third party who learned the code
    /// from replacing the host's DTLS fingerprint. As on the Worker, an answer
    /// does not need a matching offer. Renews the session like a host poll.
    pub fn post_answer(
        &mut self,
        now: Millis,
        code: Code,
        bearer: Option<&str>,
        joiner_id: &str,
        sdp: String,
    ) -> Result<Change, AnswerError> {
        self.post_answer_from(now, code, bearer, joiner_id, sdp, None)
    }

    /// [`Table::post_answer`] on behalf of `source`, whose stored SDP counts
    /// against its byte budget like an offer's.
    pub fn post_answer_from(
        &mut self,
        now: Millis,
        code: Code,
        bearer: Option<&str>,
        joiner_id: &str,
        sdp: String,
        source: Option<IpAddr>,
    ) -> Result<Change, AnswerError> {
        let ttl = self.limits.ttl;
        let max_records = self
            .limits
            .max_records_per_session
            .max(self.limits.max_peers);
        let session_budget = self.limits.session_sdp_budget();
        let source_budget = self.limits.max_sdp_bytes_per_source;
        let total_budget = self.limits.max_sdp_bytes_total;
        let ledger = self.ledger.clone();
        let s = self.live(now, code).ok_or(AnswerError::NoSession)?;
        s.authorise_host(bearer)
            .map_err(|_| AnswerError::TokenRequired)?;
        let n = sdp.len();
        let over = s.sdp_bytes().saturating_add(n) > session_budget
            || source.is_some_and(|src| ledger.source_bytes(src).saturating_add(n) > source_budget)
            || ledger.total.load(Ordering::Relaxed).saturating_add(n) > total_budget;
        if over
            && !s
                .joiners
                .iter()
                .any(|j| j.id == joiner_id && j.answer.is_some())
        {
            return Err(AnswerError::OverBudget);
        }
        let answer = Timed::new(&ledger, sdp, now.after(ttl), source);
        match s.joiners.iter_mut().find(|j| j.id == joiner_id) {
            Some(j) if j.answer.is_some() => return Err(AnswerError::AlreadyPosted),
            Some(j) => j.answer = Some(answer),
            None => {
                if s.joiners.len() >= max_records {
                    return Err(AnswerError::TooManyRecords);
                }
                s.joiners.push(Joiner {
                    id: joiner_id.to_owned(),
                    offer: None,
                    answer: Some(answer),
                });
            }
        }
        s.expires = now.after(ttl);
        s.last_host = now;
        Ok(Change::Code(code))
    }

    /// `GET host-answer/<id>`: the answer if posted and still alive. Unknown
    /// sessions and joiners look exactly like "not yet".
    pub fn answer(&mut self, now: Millis, code: Code, joiner_id: &str) -> Option<String> {
        let s = self.live(now, code)?;
        s.joiners
            .iter()
            .find(|j| j.id == joiner_id)
            .and_then(|j| j.answer.as_ref())
            .map(|t| t.sdp.clone())
    }

    /// Forgets one joiner's offer and answer (the host saw it leave), so its
    /// slot is free at once instead of when its offer lapses. Host only.
    pub fn release(
        &mut self,
        now: Millis,
        code: Code,
        bearer: Option<&str>,
        joiner_id: &str,
    ) -> Result<bool, HostError> {
        let s = self.live(now, code).ok_or(HostError::NoSession)?;
        s.authorise_host(bearer)?;
        let before = s.joiners.len();
        s.joiners.retain(|j| j.id != joiner_id);
        Ok(s.joiners.len() < before)
    }

    /// Ends a session now (its host stopped): joiners' polls get 404 from
    /// here on. Only the host may do this, so a protected session needs its
    /// token. Returns whether a session was removed.
    pub fn close(
        &mut self,
        now: Millis,
        code: Code,
        bearer: Option<&str>,
    ) -> Result<Change, HostError> {
        self.live(now, code)
            .ok_or(HostError::NoSession)?
            .authorise_host(bearer)?;
        self.remove(code);
        Ok(Change::Code(code))
    }

    /// Removes every expired session and record. Operations already ignore
    /// expired state on their own; the sweep only returns the memory.
    /// Returns the codes of sessions removed, so waiters on them can be woken.
    pub fn sweep(&mut self, now: Millis) -> Vec<Code> {
        let dead: Vec<Code> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(c, _)| *c)
            .collect();
        for c in &dead {
            self.remove(*c);
        }
        self.expired_total += dead.len() as u64;
        for s in self.sessions.values_mut() {
            s.purge(now);
        }
        dead
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            sessions: self.sessions.len(),
            live_offers: self.sessions.values().map(Session::live_offers).sum(),
            records: self.sessions.values().map(|s| s.joiners.len()).sum(),
        }
    }

    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::OsEntropy;
    use std::net::Ipv4Addr;

    const TTL: u64 = 300_000;

    /// Replays a fixed byte sequence, to force particular codes.
    struct Scripted(Vec<u8>, usize);
    impl Entropy for Scripted {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.0[self.1 % self.0.len()];
                self.1 += 1;
            }
        }
    }

    fn info(id: &str) -> SessionInfo {
        SessionInfo {
            session_id: id.into(),
            display_name: "Host".into(),
        }
    }

    fn table() -> Table {
        Table::new(TableLimits::default())
    }

    fn open(t: &mut Table, now: u64) -> Created {
        t.create(Millis(now), info("s"), false, None, &mut OsEntropy)
            .unwrap()
    }

    fn offer(t: &mut Table, now: u64, c: Code, id: &str) -> Result<Change, OfferError> {
        t.post_offer(Millis(now), now, c, id, format!("offer-{id}"))
    }

    fn ids(t: &mut Table, now: u64, c: Code) -> Vec<String> {
        t.list_offers(Millis(now), c, None)
            .unwrap()
            .offers
            .into_iter()
            .map(|o| o.joiner_id)
            .collect()
    }

    #[test]
    fn an_unpolled_session_lives_exactly_one_ttl() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        assert!(t.lookup(Millis(TTL - 1), c).is_some());
        assert!(t.lookup(Millis(TTL), c).is_none());
        assert_eq!(
            t.stats().sessions,
            0,
            "expired sessions are removed on access"
        );
    }

    #[test]
    fn an_hour_of_host_polls_keeps_the_session_and_it_lapses_one_ttl_after() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        let mut now = 0;
        while now < 3_600_000 {
            now += 1000;
            assert!(t.list_offers(Millis(now), c, None).is_some(), "at {now} ms");
        }
        assert!(t.exists(Millis(now + TTL - 1), c));
        assert!(!t.exists(Millis(now + TTL), c));
    }

    #[test]
    fn joiner_lookups_do_not_extend_a_session() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        for s in 1..300 {
            assert!(t.lookup(Millis(s * 1000), c).is_some());
        }
        assert!(t.lookup(Millis(TTL), c).is_none());
    }

    #[test]
    fn posting_an_answer_extends_the_session() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        offer(&mut t, 1000, c, "joiner-01").unwrap();
        t.post_answer(Millis(200_000), c, None, "joiner-01", "ans".into())
            .unwrap();
        assert!(t.exists(Millis(200_000 + TTL - 1), c));
        assert!(!t.exists(Millis(200_000 + TTL), c));
    }

    #[test]
    fn a_protected_session_is_renewed_only_by_its_host() {
        let mut t = table();
        let created = t
            .create(Millis(0), info("s"), true, None, &mut OsEntropy)
            .unwrap();
        let c = created.code;
        // A stranger's polls read the list but do not keep the session alive.
        assert!(t.list_offers(Millis(200_000), c, None).is_some());
        assert!(t.list_offers(Millis(250_000), c, Some("wrong")).is_some());
        assert!(!t.exists(Millis(TTL), c));

        let created = t
            .create(Millis(0), info("s"), true, None, &mut OsEntropy)
            .unwrap();
        let c = created.code;
        assert!(t
            .list_offers(Millis(200_000), c, Some(&created.host_token))
            .is_some());
        assert!(t.exists(Millis(200_000 + TTL - 1), c));
    }

    #[test]
    fn a_protected_session_takes_answers_only_with_its_token() {
        let mut t = table();
        let created = t
            .create(Millis(0), info("s"), true, None, &mut OsEntropy)
            .unwrap();
        let c = created.code;
        assert_eq!(
            t.check_host(Millis(1), c, None),
            Err(HostError::TokenRequired)
        );
        assert_eq!(
            t.post_answer(Millis(1), c, Some("nope"), "joiner-01", "a".into()),
            Err(AnswerError::TokenRequired)
        );
        assert!(t
            .post_answer(
                Millis(1),
                c,
                Some(&created.host_token),
                "joiner-01",
                "a".into()
            )
            .is_ok());
    }

    #[test]
    fn a_second_offer_for_a_joiner_id_is_refused_and_does_not_overwrite() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        offer(&mut t, 0, c, "joiner-01").unwrap();
        assert_eq!(
            t.post_offer(Millis(1), 1, c, "joiner-01", "evil".into()),
            Err(OfferError::JoinerIdInUse)
        );
        let l = t.list_offers(Millis(2), c, None).unwrap();
        assert_eq!(l.offers[0].sdp, "offer-joiner-01");
    }

    #[test]
    fn a_second_answer_is_refused_and_does_not_overwrite() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        offer(&mut t, 0, c, "joiner-01").unwrap();
        t.post_answer(Millis(1), c, None, "joiner-01", "good".into())
            .unwrap();
        assert_eq!(
            t.post_answer(Millis(2), c, None, "joiner-01", "evil".into()),
            Err(AnswerError::AlreadyPosted)
        );
        assert_eq!(t.answer(Millis(3), c, "joiner-01").as_deref(), Some("good"));
    }

    #[test]
    fn the_slot_cap_can_change_while_offers_are_stored() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        for i in 0..8 {
            offer(&mut t, 0, c, &format!("joiner-{i:02}")).unwrap();
        }
        assert_eq!(
            offer(&mut t, 1, c, "joiner-08"),
            Err(OfferError::SessionFull)
        );
        t.set_max_peers(10);
        offer(&mut t, 1, c, "joiner-08").unwrap();
        offer(&mut t, 1, c, "joiner-09").unwrap();
        assert_eq!(
            offer(&mut t, 1, c, "joiner-10"),
            Err(OfferError::SessionFull)
        );
        // Lowered below what is stored: the stored offers stay, no new one.
        t.set_max_peers(2);
        assert_eq!(t.stats().live_offers, 10);
        assert_eq!(
            offer(&mut t, 1, c, "joiner-11"),
            Err(OfferError::SessionFull)
        );
    }

    #[test]
    fn slots_count_live_offers_only() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        for i in 0..8 {
            offer(&mut t, 0, c, &format!("joiner-{i:02}")).unwrap();
        }
        assert_eq!(
            offer(&mut t, 1, c, "joiner-99"),
            Err(OfferError::SessionFull)
        );
        // Keep the session alive with a host poll, let the offers lapse.
        t.list_offers(Millis(200_000), c, None).unwrap();
        assert!(offer(&mut t, TTL, c, "joiner-99").is_ok());
        assert_eq!(ids(&mut t, TTL, c), vec!["joiner-99"]);
    }

    #[test]
    fn a_lapsed_offer_frees_its_joiner_id() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        offer(&mut t, 0, c, "joiner-01").unwrap();
        t.list_offers(Millis(200_000), c, None).unwrap();
        assert!(offer(&mut t, TTL, c, "joiner-01").is_ok());
    }

    #[test]
    fn offers_are_listed_in_arrival_order_answered_ones_included() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        for id in ["joiner-bb", "joiner-aa", "joiner-cc"] {
            offer(&mut t, 0, c, id).unwrap();
        }
        t.post_answer(Millis(1), c, None, "joiner-aa", "x".into())
            .unwrap();
        let l = t.list_offers(Millis(2), c, None).unwrap();
        let got: Vec<_> = l.offers.iter().map(|o| o.joiner_id.as_str()).collect();
        assert_eq!(got, ["joiner-bb", "joiner-aa", "joiner-cc"]);
        assert!(l.has_unanswered);
        for id in ["joiner-bb", "joiner-cc"] {
            t.post_answer(Millis(3), c, None, id, "x".into()).unwrap();
        }
        assert!(!t.list_offers(Millis(4), c, None).unwrap().has_unanswered);
    }

    #[test]
    fn an_answer_needs_no_offer_but_such_records_are_capped() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        for i in 0..32 {
            t.post_answer(Millis(0), c, None, &format!("joiner-{i:02}"), "a".into())
                .unwrap();
        }
        assert_eq!(
            t.post_answer(Millis(0), c, None, "joiner-xx", "a".into()),
            Err(AnswerError::TooManyRecords)
        );
        // A real joiner still gets in: the oldest answer-only record yields.
        assert!(offer(&mut t, 1, c, "joiner-new").is_ok());
        assert_eq!(t.stats().records, 32);
        assert_eq!(t.answer(Millis(2), c, "joiner-00"), None);
        assert_eq!(t.answer(Millis(2), c, "joiner-31").as_deref(), Some("a"));
    }

    #[test]
    fn answers_lapse_one_ttl_after_their_write() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        offer(&mut t, 0, c, "joiner-01").unwrap();
        t.post_answer(Millis(100_000), c, None, "joiner-01", "a".into())
            .unwrap();
        assert!(t
            .answer(Millis(100_000 + TTL - 1), c, "joiner-01")
            .is_some());
        t.list_offers(Millis(100_000 + TTL - 1), c, None).unwrap();
        assert!(t.answer(Millis(100_000 + TTL), c, "joiner-01").is_none());
    }

    #[test]
    fn a_colliding_code_is_re_rolled() {
        let mut t = table();
        // Bytes 0,0,0,0 give "AAAA"; then 1,1,1,1 give "BBBB".
        let mut e = Scripted(vec![0; 16], 0);
        let first = t.create(Millis(0), info("a"), false, None, &mut e).unwrap();
        assert_eq!(first.code.as_str(), "AAAA");
        let mut e = Scripted([vec![0; 16], vec![1; 16], vec![7; 32]].concat(), 0);
        let second = t.create(Millis(0), info("b"), false, None, &mut e).unwrap();
        assert_eq!(second.code.as_str(), "BBBB");
        assert_eq!(t.lookup(Millis(1), first.code).unwrap().session_id, "a");
    }

    #[test]
    fn a_preferred_code_is_given_when_free_and_a_fresh_one_when_live() {
        let mut t = table();
        let first = t
            .create(Millis(0), info("a"), true, None, &mut OsEntropy)
            .unwrap();
        let code = first.code;
        // Live: the preference yields to the session holding it.
        let other = t
            .create_preferring(Millis(0), info("b"), true, None, &mut OsEntropy, Some(code))
            .unwrap();
        assert_ne!(other.code, code);
        assert_eq!(t.lookup(Millis(1), code).unwrap().session_id, "a");
        // Closed: the restarted host gets it again, with a new token.
        t.remove(code);
        let again = t
            .create_preferring(
                Millis(2),
                info("a2"),
                true,
                None,
                &mut OsEntropy,
                Some(code),
            )
            .unwrap();
        assert_eq!(again.code, code);
        assert_ne!(again.host_token, first.host_token);
        assert_eq!(t.lookup(Millis(3), code).unwrap().session_id, "a2");
    }

    #[test]
    fn codes_that_always_collide_end_in_a_clear_error() {
        let mut t = table();
        let mut e = Scripted(vec![0; 16], 0);
        t.create(Millis(0), info("a"), false, None, &mut e).unwrap();
        assert_eq!(
            t.create(Millis(0), info("b"), false, None, &mut e)
                .unwrap_err(),
            CreateError::NoFreeCode
        );
        assert_eq!(t.stats().sessions, 1);
    }

    #[test]
    fn the_session_cap_counts_live_sessions_only() {
        let mut t = Table::new(TableLimits {
            max_sessions: 3,
            ..TableLimits::default()
        });
        for _ in 0..3 {
            open(&mut t, 0);
        }
        assert_eq!(
            t.create(Millis(1), info("x"), false, None, &mut OsEntropy)
                .unwrap_err(),
            CreateError::ServerFull
        );
        assert!(t
            .create(Millis(TTL), info("x"), false, None, &mut OsEntropy)
            .is_ok());
    }

    #[test]
    fn the_per_source_cap_is_per_source_and_frees_on_expiry() {
        let mut t = Table::new(TableLimits {
            max_sessions_per_source: 2,
            ..TableLimits::default()
        });
        let a = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let b = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        let mk =
            |t: &mut Table, now, src| t.create(Millis(now), info("s"), false, src, &mut OsEntropy);
        mk(&mut t, 0, a).unwrap();
        mk(&mut t, 0, a).unwrap();
        assert_eq!(mk(&mut t, 1, a).unwrap_err(), CreateError::SourceFull);
        assert!(mk(&mut t, 1, b).is_ok());
        assert!(mk(&mut t, TTL, a).is_ok());
    }

    #[test]
    fn sweep_reports_and_drops_expired_sessions() {
        let mut t = table();
        let old = open(&mut t, 0).code;
        let young = open(&mut t, 100_000).code;
        offer(&mut t, 100_000, young, "joiner-01").unwrap();
        let dead = t.sweep(Millis(TTL));
        assert_eq!(dead, vec![old]);
        assert_eq!(
            t.stats(),
            TableStats {
                sessions: 1,
                live_offers: 1,
                records: 1
            }
        );
        assert_eq!(t.expired_total(), 1);
    }

    #[test]
    fn releasing_a_joiner_frees_its_slot_at_once() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        for i in 0..8 {
            offer(&mut t, 0, c, &format!("joiner-{i:02}")).unwrap();
        }
        assert_eq!(
            offer(&mut t, 1, c, "joiner-99"),
            Err(OfferError::SessionFull)
        );
        assert_eq!(t.release(Millis(2), c, None, "joiner-03"), Ok(true));
        assert_eq!(t.release(Millis(2), c, None, "joiner-03"), Ok(false));
        assert!(offer(&mut t, 3, c, "joiner-99").is_ok());
        assert_eq!(t.answer(Millis(3), c, "joiner-03"), None);
    }

    #[test]
    fn closing_a_session_ends_it_for_everyone_and_needs_the_token_when_protected() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        assert_eq!(t.close(Millis(1), c, None), Ok(Change::Code(c)));
        assert!(!t.exists(Millis(1), c));
        assert_eq!(t.close(Millis(1), c, None), Err(HostError::NoSession));
        let p = t
            .create(Millis(0), info("s"), true, None, &mut OsEntropy)
            .unwrap();
        assert_eq!(
            t.close(Millis(1), p.code, None),
            Err(HostError::TokenRequired)
        );
        assert!(t.close(Millis(1), p.code, Some(&p.host_token)).is_ok());
        assert_eq!(t.stats().sessions, 0);
    }

    #[test]
    fn unknown_sessions_and_joiners_look_like_not_yet() {
        let mut t = table();
        let c = open(&mut t, 0).code;
        assert_eq!(t.answer(Millis(0), c, "joiner-01"), None);
        // O and 0 are valid in routes but never drawn, so this code is never live.
        let other = Code::parse_route("O0O0").unwrap();
        assert_eq!(t.answer(Millis(0), other, "joiner-01"), None);
        assert_eq!(
            offer(&mut t, 0, other, "joiner-01"),
            Err(OfferError::NoSession)
        );
        assert_eq!(
            t.post_answer(Millis(0), other, None, "joiner-01", "a".into()),
            Err(AnswerError::NoSession)
        );
    }

    fn src(i: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
    }

    #[test]
    fn sdp_budgets_are_per_session_per_source_and_total_and_refilled_on_expiry() {
        let mut t = Table::new(TableLimits {
            max_peers: 8,
            max_sdp_bytes_per_session: 0, // floor: 8 x 32 KiB
            max_sdp_bytes_per_source: 300_000,
            max_sdp_bytes_total: 500_000,
            ..TableLimits::default()
        });
        let big = "x".repeat(100_000);
        let a = open(&mut t, 0).code;
        let b = open(&mut t, 0).code;
        let c = open(&mut t, 0).code;
        let post = |t: &mut Table, code, id: &str, from| {
            t.post_offer_from(Millis(0), 0, code, id, big.clone(), from)
        };
        // Session budget: 256 KiB holds two 100 KB offers, not three.
        assert!(post(&mut t, a, "joiner-01", src(1)).is_ok());
        assert!(post(&mut t, a, "joiner-02", src(2)).is_ok());
        assert_eq!(
            post(&mut t, a, "joiner-03", src(3)),
            Err(OfferError::SessionBudget)
        );
        // Source budget: source 1 already stored 100 KB; two more fit.
        assert!(post(&mut t, b, "joiner-04", src(1)).is_ok());
        assert!(post(&mut t, c, "joiner-05", src(1)).is_ok());
        assert_eq!(
            post(&mut t, c, "joiner-06", src(1)),
            Err(OfferError::SourceBudget)
        );
        // Total budget: 400 KB stored, one more 100 KB fits, then none.
        assert!(post(&mut t, b, "joiner-07", src(4)).is_ok());
        assert_eq!(t.sdp_bytes(), 500_000);
        assert_eq!(
            post(&mut t, c, "joiner-08", src(5)),
            Err(OfferError::ServerBudget)
        );
        // Releasing and expiry give the bytes back.
        assert_eq!(t.release(Millis(0), a, None, "joiner-01"), Ok(true));
        assert_eq!(t.sdp_bytes(), 400_000);
        t.sweep(Millis(TTL));
        assert_eq!(t.sdp_bytes(), 0);
        assert!(t.ledger.per_source().is_empty());
    }

    #[test]
    fn a_full_table_evicts_the_idle_then_the_biggest_holder_never_a_polling_host() {
        let mut t = Table::new(TableLimits {
            max_sessions: 4,
            idle_after: Duration::from_secs(60),
            ..TableLimits::default()
        });
        let mk = |t: &mut Table, now, from| {
            t.create(Millis(now), info("s"), false, from, &mut OsEntropy)
        };
        let host = mk(&mut t, 0, src(1)).unwrap().code;
        let squat: Vec<Code> = (0..3)
            .map(|_| mk(&mut t, 0, src(2)).unwrap().code)
            .collect();
        // Full: the biggest holder (3 sessions) gives one up for a newcomer.
        t.list_offers(Millis(1_000), host, None).unwrap();
        let newcomer = mk(&mut t, 1_000, src(3)).unwrap().code;
        assert_eq!(t.take_evicted().len(), 1);
        assert!(t.lookup(Millis(1_000), host).is_some());
        assert!(t.lookup(Millis(1_000), newcomer).is_some());
        assert_eq!(
            squat
                .iter()
                .filter(|c| t.lookup(Millis(1_000), **c).is_some())
                .count(),
            2
        );
        // Shares 1/2/1: the 2-session source gives one up for a source
        // with none; at 1/1/1/1 nobody holds two more, so the next waits.
        mk(&mut t, 2_000, src(4)).unwrap();
        assert_eq!(t.take_evicted().len(), 1);
        assert!(t.lookup(Millis(2_000), host).is_some());
        assert_eq!(
            mk(&mut t, 2_000, src(5)).map(|_| ()).unwrap_err(),
            CreateError::ServerFull
        );
        assert!(t.take_evicted().is_empty());
        // Later, only the host keeps polling: the idle sessions go first.
        t.list_offers(Millis(90_000), host, None).unwrap();
        let late = mk(&mut t, 90_000, src(5)).unwrap().code;
        let gone = t.take_evicted();
        assert_eq!(gone.len(), 1);
        assert_ne!(gone[0], host);
        assert!(t.lookup(Millis(90_000), host).is_some());
        assert!(t.lookup(Millis(90_000), late).is_some());
        assert_eq!(t.evicted_total(), 3);
    }

    #[test]
    fn the_token_holder_is_recognised_in_any_session() {
        let mut t = table();
        let c = t
            .create(Millis(0), info("s"), false, None, &mut OsEntropy)
            .unwrap();
        assert!(t.is_token_holder(Millis(0), c.code, Some(&c.host_token)));
        assert!(!t.is_token_holder(Millis(0), c.code, Some("nope")));
        assert!(!t.is_token_holder(Millis(0), c.code, None));
    }
}
