//! Reaching the rendezvous as a host: the bundled one in this process, or a
//! remote one (the public Worker, or another copy of our server) over HTTP.
//!
//! The bundled case never polls itself over HTTP: it waits on the table
//! through [`types::InProcessRendezvous`], so an offer reaches the host the
//! moment it is posted, and this crate needs no HTTP server to do it. The
//! remote case goes through the one [`crate::rendezvous::Client`]: it
//! long-polls `joiner-offers` when the rendezvous advertises `long-poll`,
//! and otherwise polls every second as a MidiEditor host does, which is
//! what every v3 rendezvous is built to serve.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use types::{Code, HostError, InProcessRendezvous, RendezvousUrl};

use crate::rendezvous::{Client, RendezvousError};

/// One joiner's offer.
pub type Offer = types::PendingOffer;

/// Where the host registers its session.
#[derive(Clone)]
pub enum Target {
    /// The rendezvous running in this process.
    Bundled(Arc<dyn InProcessRendezvous>),
    /// A rendezvous reached over HTTP.
    Remote(RendezvousUrl),
}

impl Target {
    /// The rendezvous running in this process.
    pub fn bundled(rdv: impl InProcessRendezvous + 'static) -> Target {
        Target::Bundled(Arc::new(rdv))
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Bundled(_) => f.write_str("Bundled"),
            Target::Remote(url) => write!(f, "Remote({url})"),
        }
    }
}

/// A session this host holds.
#[derive(Clone)]
pub struct HostSession {
    pub code: Code,
    /// Our extension's host token; empty when the rendezvous does not issue
    /// one (the public Worker).
    token: String,
}

impl fmt::Debug for HostSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostSession")
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

impl HostSession {
    fn token(&self) -> Option<&str> {
        (!self.token.is_empty()).then_some(self.token.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// The session is no longer on the rendezvous: register again.
    #[error("the session is gone from the rendezvous")]
    SessionGone,
    /// The bundled rendezvous refused, in its own words.
    #[error("the rendezvous refused: {0}")]
    Refused(String),
    /// A remote rendezvous failed; the message says what to do.
    #[error(transparent)]
    Remote(RendezvousError),
}

impl From<HostError> for SignalError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::SessionGone => SignalError::SessionGone,
            HostError::Refused(m) => SignalError::Refused(m),
        }
    }
}

impl From<RendezvousError> for SignalError {
    fn from(e: RendezvousError) -> Self {
        match e {
            RendezvousError::NoSession { .. } => SignalError::SessionGone,
            other => SignalError::Remote(other),
        }
    }
}

/// Host-side client of one rendezvous.
#[derive(Clone)]
pub struct Signaller {
    via: Via,
    /// The remote rendezvous advertised `long-poll` in `/health`.
    long_poll: Arc<AtomicBool>,
    /// Interval between remote polls (MidiEditor's host uses 1 s), and the
    /// shortest time between two long-polls.
    poll_every: Duration,
}

#[derive(Clone)]
enum Via {
    Bundled(Arc<dyn InProcessRendezvous>),
    Remote(Client),
}

/// How long one bundled wait lasts before the host loop gets control back;
/// long, because a new offer ends the wait at once anyway.
const BUNDLED_WAIT: Duration = Duration::from_secs(20);
/// `?wait=` of the remote host's long-poll (below the protocol's 25 s).
const REMOTE_WAIT: Duration = Duration::from_secs(20);
/// Budget of each plain request to a remote rendezvous.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// MidiEditor's pre-flight budget for `/health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

impl Signaller {
    pub fn new(target: Target) -> Self {
        let via = match target {
            Target::Remote(url) => Via::Remote(Client::new(url, REQUEST_TIMEOUT)),
            Target::Bundled(rdv) => Via::Bundled(rdv),
        };
        Signaller {
            via,
            long_poll: Arc::new(AtomicBool::new(false)),
            poll_every: Duration::from_secs(1),
        }
    }

    /// The rendezvous's health check, as MidiEditor does it before hosting
    /// (3 s budget); also learns whether it long-polls.
    pub async fn health(&self) -> Result<(), SignalError> {
        let Via::Remote(client) = &self.via else {
            return Ok(());
        };
        let health = client.health(HEALTH_TIMEOUT).await?;
        self.long_poll.store(health.long_poll(), Ordering::Relaxed);
        Ok(())
    }

    /// Registers a new session and returns its code. On the bundled
    /// rendezvous the session gets `prefer` when no live session holds it
    /// (a restarted host keeps its code); a remote v3 rendezvous always
    /// draws the code itself.
    pub async fn open(
        &self,
        session_id: &str,
        display_name: &str,
        prefer: Option<Code>,
    ) -> Result<HostSession, SignalError> {
        match &self.via {
            Via::Remote(client) => {
                // Never "gone" here: a fresh session cannot be lost.
                let opened = client
                    .open(session_id, display_name)
                    .await
                    .map_err(SignalError::Remote)?;
                Ok(HostSession {
                    code: opened.code,
                    token: opened.host_token.unwrap_or_default(),
                })
            }
            Via::Bundled(rdv) => {
                let opened = rdv.host_open(session_id, display_name, true, prefer)?;
                Ok(HostSession {
                    code: opened.code,
                    token: opened.host_token,
                })
            }
        }
    }

    /// Waits for offers from joiners not in `seen`. Bundled: returns as soon
    /// as one is posted. Remote: one long-poll, or one poll a poll interval
    /// after the last. May return an empty list; the caller just asks again.
    pub async fn next_offers(
        &self,
        s: &HostSession,
        seen: &HashSet<String>,
    ) -> Result<Vec<Offer>, SignalError> {
        let client = match &self.via {
            Via::Remote(client) => client,
            Via::Bundled(rdv) => {
                return Ok(rdv
                    .host_next_offers(s.code, &s.token, seen, BUNDLED_WAIT)
                    .await?)
            }
        };
        let long_poll = self.long_poll.load(Ordering::Relaxed);
        let started = Instant::now();
        if !long_poll {
            tokio::time::sleep(self.poll_every).await;
        }
        let wait = long_poll.then_some(REMOTE_WAIT);
        let fresh: Vec<Offer> = client
            .list_offers(&s.code, s.token(), wait)
            .await?
            .into_iter()
            .filter(|o| !seen.contains(&o.joiner_id))
            .collect();
        // A long-poll answers at once while a listed offer has no answer
        // yet (ours is still being made): wait out the poll interval rather
        // than spin on it.
        if long_poll && fresh.is_empty() {
            if let Some(rest) = self.poll_every.checked_sub(started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        Ok(fresh)
    }

    /// Posts our answer for one joiner.
    pub async fn answer(
        &self,
        s: &HostSession,
        joiner_id: &str,
        sdp: String,
    ) -> Result<(), SignalError> {
        match &self.via {
            Via::Remote(client) => Ok(client
                .post_answer(&s.code, s.token(), joiner_id, &sdp)
                .await?),
            Via::Bundled(rdv) => Ok(rdv.host_answer(s.code, &s.token, joiner_id, sdp)?),
        }
    }

    /// Frees the slot of a joiner that left, on the bundled rendezvous (a
    /// v3 rendezvous has no such request; there the offer lapses on its own).
    pub fn release(&self, s: &HostSession, joiner_id: &str) {
        if let Via::Bundled(rdv) = &self.via {
            let _ = rdv.host_release(s.code, &s.token, joiner_id);
        }
    }

    /// Ends the session. The bundled rendezvous drops it at once; the v3
    /// protocol has no way to delete a remote session, which lapses one TTL
    /// after our last poll.
    pub async fn close(&self, s: &HostSession) {
        if let Via::Bundled(rdv) = &self.via {
            let _ = rdv.host_close(s.code, &s.token);
        }
    }
}
