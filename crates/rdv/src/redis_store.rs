//! The shared session store on Redis (or Valkey): what lets several
//! `midi-rdv serve` instances behind a load balancer serve one set of
//! sessions, and sessions outlive a restart of any of them.
//!
//! Every rule of [`crate::table`] that must be atomic runs inside one Lua
//! script per operation (`src/redis_lua/`), so two instances can race on the
//! same code exactly as two requests race on one in-memory table: Redis runs
//! a script alone. The scripts are sent by SHA (`EVALSHA`, falling back to
//! `EVAL` when a restarted Redis forgot them).
//!
//! Time stays the server's: each call passes `now` in. It is the wall clock
//! in milliseconds (the only time every instance, and a restarted one,
//! agrees on), and expiry times are stored as numbers. Sessions get no
//! Redis expiry at all: the per-source and total counters are given back by
//! the script that removes a session (the sweep, or any access after the
//! end), so a key Redis dropped by itself would leave them counted for
//! ever. A store whose instances all stopped keeps its sessions until the
//! next instance sweeps them; the caps bound what that can be.
//!
//! Failure is bounded: one multiplexed connection per instance (plus one
//! for pub/sub), each call given [`COMMAND_TIMEOUT`]; a call that fails or
//! times out is a [`StoreDown`], which the server answers with a JSON 503.
//! The connection manager reconnects on its own.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use crate::clock::Millis;
use crate::code::{new_host_token, random_code, Code, Entropy};
use crate::guard::GuardLimits;
use crate::table::{
    AnswerError, CreateError, Created, OfferError, OfferList, OfferView, SessionInfo, TableLimits,
};

/// How long one Redis call may take before the request is answered 503.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The guessing counters' Redis expiry is set this far past their window
/// and lockout: garbage collection only (they are self-contained).
const GC_MARGIN_MS: u64 = 10 * 60 * 1000;

/// Sweep calls per sweep tick at most (each removes up to 128 expired
/// sessions; the next call runs only while the last one found a full batch).
const SWEEP_CALLS_PER_TICK: usize = 32;

/// Candidate codes sent with each create: the script takes the first one
/// not live (as the table re-rolls up to 64 times).
const CODE_CANDIDATES: usize = 64;

/// Where the shared store is and which key namespace it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port/db` (or `valkey://`, or a Unix
    /// socket `redis+unix:///path`). No TLS (`rediss://`) is compiled in:
    /// the store is meant to sit on a private network next to the
    /// instances.
    pub url: String,
    /// Prefix of every key and of the wake-up channel, so several
    /// deployments (or tests) can share one Redis.
    pub prefix: String,
}

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "midi-rdv:";

/// The store could not be reached (or answered nonsense) in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session store unavailable")]
pub struct StoreDown;

/// Checks that `url` is a Redis URL the client accepts, without connecting.
/// The message leaves the URL out: it may carry the store's password, and
/// it would end up in the service's journal.
pub fn validate_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("invalid store URL: {e}"))
}

struct Scripts {
    create: Script,
    lookup: Script,
    host_check: Script,
    post_offer: Script,
    list_offers: Script,
    post_answer: Script,
    answer: Script,
    sweep: Script,
    stats: Script,
    guard_fail: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let prelude = include_str!("redis_lua/prelude.lua");
        let s = |body: &str| Script::new(&format!("{prelude}\n{body}"));
        Scripts {
            create: s(include_str!("redis_lua/create.lua")),
            lookup: s(include_str!("redis_lua/lookup.lua")),
            host_check: s(include_str!("redis_lua/host_check.lua")),
            post_offer: s(include_str!("redis_lua/post_offer.lua")),
            list_offers: s(include_str!("redis_lua/list_offers.lua")),
            post_answer: s(include_str!("redis_lua/post_answer.lua")),
            answer: s(include_str!("redis_lua/answer.lua")),
            sweep: s(include_str!("redis_lua/sweep.lua")),
            stats: s(include_str!("redis_lua/stats.lua")),
            guard_fail: s(include_str!("redis_lua/guard_fail.lua")),
        }
    }
}

/// What `host_check` tells about a bearer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCheck {
    /// May act as host (holds the token, or the session is unprotected).
    pub host: bool,
    /// Holds the token itself (exempt from the guessing lockout).
    pub holder: bool,
}

/// Gauges the store can give cheaply.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreStats {
    pub sessions: usize,
    pub sdp_bytes: usize,
    pub expired_total: u64,
    pub evicted_total: u64,
    pub lockouts_total: u64,
}

/// One instance's handle on the shared store.
pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    limits: TableLimits,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn source_arg(source: Option<IpAddr>) -> String {
    source.map(|s| s.to_string()).unwrap_or_default()
}

impl RedisStore {
    /// A store handle; connects lazily, so a Redis that is down at start
    /// only makes requests answer 503 until it is up. Needs a Tokio runtime.
    pub fn new(config: &RedisConfig, limits: TableLimits) -> Result<RedisStore, String> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| format!("invalid store URL: {e}"))?;
        let cm = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            // A request never waits on reconnect back-off: it fails at once
            // (503) and the next request tries again.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), cm)
            .map_err(|e| format!("store: {e}"))?;
        Ok(RedisStore {
            client,
            conn,
            prefix: config.prefix.clone(),
            limits,
            scripts: Scripts::new(),
        })
    }

    /// The pub/sub channel every write announces its code on.
    pub fn wake_channel(&self) -> String {
        format!("{}wake", self.prefix)
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Runs one script with the common arguments (prefix, now, limits)
    /// followed by `extra`, bounded by [`COMMAND_TIMEOUT`].
    async fn run(&self, script: &Script, now: Millis, extra: &[&[u8]]) -> Result<Value, StoreDown> {
        let l = &self.limits;
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(now.0)
            .arg(l.ttl.as_millis() as u64)
            .arg(l.max_sessions)
            .arg(l.max_sessions_per_source)
            .arg(l.max_peers)
            .arg(l.max_records_per_session)
            .arg(l.session_sdp_budget())
            .arg(l.max_sdp_bytes_per_source)
            .arg(l.max_sdp_bytes_total)
            .arg(l.idle_after.as_millis() as u64)
            .arg(GC_MARGIN_MS);
        for a in extra {
            inv.arg(*a);
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, inv.invoke_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "session store call failed");
                Err(StoreDown)
            }
            Err(_) => {
                tracing::warn!("session store call timed out");
                Err(StoreDown)
            }
        }
    }

    async fn run_list(
        &self,
        script: &Script,
        now: Millis,
        extra: &[&[u8]],
    ) -> Result<Vec<Value>, StoreDown> {
        match self.run(script, now, extra).await? {
            Value::Array(v) => Ok(v),
            _ => Err(StoreDown),
        }
    }

    fn status(v: &[Value]) -> Result<String, StoreDown> {
        v.first().and_then(text).ok_or(StoreDown)
    }

    pub async fn create(
        &self,
        now: Millis,
        info: SessionInfo,
        protect_answers: bool,
        source: Option<IpAddr>,
        entropy: &mut (dyn Entropy + Send),
    ) -> Result<Result<Created, CreateError>, StoreDown> {
        let token = new_host_token(entropy);
        let codes: Vec<Code> = (0..CODE_CANDIDATES).map(|_| random_code(entropy)).collect();
        let src = source_arg(source);
        let prot = if protect_answers { "1" } else { "0" };
        let mut extra: Vec<&[u8]> = vec![
            info.session_id.as_bytes(),
            info.display_name.as_bytes(),
            prot.as_bytes(),
            src.as_bytes(),
            token.as_bytes(),
        ];
        extra.extend(codes.iter().map(|c| c.as_str().as_bytes()));
        let v = self.run_list(&self.scripts.create, now, &extra).await?;
        match Self::status(&v)?.as_str() {
            "ok" => {
                let code = v
                    .get(1)
                    .and_then(text)
                    .and_then(|c| Code::parse_route(&c))
                    .ok_or(StoreDown)?;
                Ok(Ok(Created {
                    code,
                    host_token: token,
                }))
            }
            _ => Ok(Err(match v.get(1).and_then(text).as_deref() {
                Some("SourceFull") => CreateError::SourceFull,
                Some("NoFreeCode") => CreateError::NoFreeCode,
                _ => CreateError::ServerFull,
            })),
        }
    }

    pub async fn lookup(&self, now: Millis, code: Code) -> Result<Option<SessionInfo>, StoreDown> {
        let v = self
            .run_list(&self.scripts.lookup, now, &[code.as_str().as_bytes()])
            .await?;
        if Self::status(&v)? != "ok" {
            return Ok(None);
        }
        Ok(Some(SessionInfo {
            session_id: v.get(1).and_then(text).ok_or(StoreDown)?,
            display_name: v.get(2).and_then(text).ok_or(StoreDown)?,
        }))
    }

    /// None: no such live session.
    pub async fn host_check(
        &self,
        now: Millis,
        code: Code,
        bearer: Option<&str>,
    ) -> Result<Option<HostCheck>, StoreDown> {
        let v = self
            .run_list(
                &self.scripts.host_check,
                now,
                &[code.as_str().as_bytes(), bearer.unwrap_or("").as_bytes()],
            )
            .await?;
        if Self::status(&v)? != "ok" {
            return Ok(None);
        }
        Ok(Some(HostCheck {
            host: v.get(1).and_then(int) == Some(1),
            holder: v.get(2).and_then(int) == Some(1),
        }))
    }

    /// The offer's `ts` is `now`: the store's time is already wall-clock
    /// milliseconds.
    pub async fn post_offer(
        &self,
        now: Millis,
        code: Code,
        joiner_id: &str,
        sdp: &str,
        source: Option<IpAddr>,
    ) -> Result<Result<(), OfferError>, StoreDown> {
        let src = source_arg(source);
        let v = self
            .run_list(
                &self.scripts.post_offer,
                now,
                &[
                    code.as_str().as_bytes(),
                    joiner_id.as_bytes(),
                    sdp.as_bytes(),
                    src.as_bytes(),
                ],
            )
            .await?;
        if Self::status(&v)? == "ok" {
            return Ok(Ok(()));
        }
        Ok(Err(match v.get(1).and_then(text).as_deref() {
            Some("NoSession") => OfferError::NoSession,
            Some("JoinerIdInUse") => OfferError::JoinerIdInUse,
            Some("SessionFull") => OfferError::SessionFull,
            Some("SessionBudget") => OfferError::SessionBudget,
            Some("SourceBudget") => OfferError::SourceBudget,
            Some("ServerBudget") => OfferError::ServerBudget,
            _ => return Err(StoreDown),
        }))
    }

    pub async fn list_offers(
        &self,
        now: Millis,
        code: Code,
        bearer: Option<&str>,
    ) -> Result<Option<OfferList>, StoreDown> {
        let v = self
            .run_list(
                &self.scripts.list_offers,
                now,
                &[code.as_str().as_bytes(), bearer.unwrap_or("").as_bytes()],
            )
            .await?;
        if Self::status(&v)? != "ok" {
            return Ok(None);
        }
        let has_unanswered = v.get(1).and_then(int) == Some(1);
        let mut offers = Vec::new();
        for item in v.get(2..).unwrap_or(&[]).chunks(3) {
            let [id, sdp, ts] = item else {
                return Err(StoreDown);
            };
            offers.push(OfferView {
                joiner_id: text(id).ok_or(StoreDown)?,
                sdp: text(sdp).ok_or(StoreDown)?,
                ts: int(ts)
                    .and_then(|t| u64::try_from(t).ok())
                    .ok_or(StoreDown)?,
            });
        }
        Ok(Some(OfferList {
            offers,
            has_unanswered,
        }))
    }

    pub async fn post_answer(
        &self,
        now: Millis,
        code: Code,
        bearer: Option<&str>,
        joiner_id: &str,
        sdp: &str,
        source: Option<IpAddr>,
    ) -> Result<Result<(), AnswerError>, StoreDown> {
        let src = source_arg(source);
        let v = self
            .run_list(
                &self.scripts.post_answer,
                now,
                &[
                    code.as_str().as_bytes(),
                    bearer.unwrap_or("").as_bytes(),
                    joiner_id.as_bytes(),
                    sdp.as_bytes(),
                    src.as_bytes(),
                ],
            )
            .await?;
        if Self::status(&v)? == "ok" {
            return Ok(Ok(()));
        }
        Ok(Err(match v.get(1).and_then(text).as_deref() {
            Some("NoSession") => AnswerError::NoSession,
            Some("TokenRequired") => AnswerError::TokenRequired,
            Some("AlreadyPosted") => AnswerError::AlreadyPosted,
            Some("TooManyRecords") => AnswerError::TooManyRecords,
            Some("OverBudget") => AnswerError::OverBudget,
            _ => return Err(StoreDown),
        }))
    }

    pub async fn answer(
        &self,
        now: Millis,
        code: Code,
        joiner_id: &str,
    ) -> Result<Option<String>, StoreDown> {
        let v = self
            .run_list(
                &self.scripts.answer,
                now,
                &[code.as_str().as_bytes(), joiner_id.as_bytes()],
            )
            .await?;
        if Self::status(&v)? != "ok" {
            return Ok(None);
        }
        v.get(1).and_then(text).map(Some).ok_or(StoreDown)
    }

    /// Removes expired sessions in bounded batches (one script call each,
    /// so no call holds Redis long); returns how many.
    pub async fn sweep(&self, now: Millis) -> Result<u64, StoreDown> {
        let mut total = 0;
        for _ in 0..SWEEP_CALLS_PER_TICK {
            let v = self.run(&self.scripts.sweep, now, &[]).await?;
            let n = int(&v).unwrap_or(0).max(0) as u64;
            total += n;
            if n < 128 {
                break;
            }
        }
        Ok(total)
    }

    pub async fn stats(&self, now: Millis) -> Result<StoreStats, StoreDown> {
        let v = self.run_list(&self.scripts.stats, now, &[]).await?;
        let n = |i: usize| v.get(i).and_then(int).unwrap_or(0).max(0) as u64;
        Ok(StoreStats {
            sessions: n(0) as usize,
            sdp_bytes: n(1) as usize,
            expired_total: n(2),
            evicted_total: n(3),
            lockouts_total: n(4),
        })
    }

    /// Whether `source` is locked out for guessing now.
    pub async fn guard_is_locked(&self, now: Millis, source: IpAddr) -> Result<bool, StoreDown> {
        let key = format!("{}g:{source}", self.prefix);
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("HGET").arg(&key).arg("lu").to_owned();
        let got =
            tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<Option<u64>>(&mut conn)).await;
        match got {
            Ok(Ok(lu)) => Ok(lu.is_some_and(|t| now.0 < t)),
            _ => Err(StoreDown),
        }
    }

    /// Records one failed lookup; true if it started a lockout.
    pub async fn guard_fail(
        &self,
        now: Millis,
        source: IpAddr,
        limits: &GuardLimits,
    ) -> Result<bool, StoreDown> {
        let src = source.to_string();
        let maxf = limits.max_failures.to_string();
        let window = limits.window.as_millis().to_string();
        let lockout = limits.lockout.as_millis().to_string();
        let v = self
            .run(
                &self.scripts.guard_fail,
                now,
                &[
                    src.as_bytes(),
                    maxf.as_bytes(),
                    window.as_bytes(),
                    lockout.as_bytes(),
                ],
            )
            .await?;
        Ok(int(&v) == Some(1))
    }
}

/// Follows the wake-up channel for as long as `alive` says, calling `wake`
/// with each code announced, and `wake_all` after every (re)subscription:
/// announcements missed while disconnected cannot be replayed, so every
/// local long-poll re-reads its state instead.
pub async fn follow_wakeups(
    store: Arc<RedisStore>,
    mut closing: tokio::sync::watch::Receiver<bool>,
    wake: impl Fn(Code),
    wake_all: impl Fn(),
) {
    use futures_util::StreamExt;
    let channel = store.wake_channel();
    let mut delay = Duration::from_millis(100);
    loop {
        if *closing.borrow() {
            return;
        }
        let sub = tokio::time::timeout(COMMAND_TIMEOUT, async {
            let mut ps = store.client().get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        })
        .await;
        match sub {
            Ok(Ok(ps)) => {
                delay = Duration::from_millis(100);
                tracing::info!("following store wake-ups");
                wake_all();
                let mut messages = ps.into_on_message();
                loop {
                    tokio::select! {
                        m = messages.next() => match m {
                            Some(msg) => {
                                if let Some(code) = std::str::from_utf8(msg.get_payload_bytes())
                                    .ok()
                                    .and_then(Code::parse_route)
                                {
                                    wake(code);
                                }
                            }
                            None => break,
                        },
                        _ = crate::server::until_closing(&mut closing) => return,
                    }
                }
                tracing::warn!("store wake-up subscription lost; reconnecting");
                wake_all();
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "store wake-up subscription failed"),
            Err(_) => tracing::warn!("store wake-up subscription timed out"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = crate::server::until_closing(&mut closing) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
