//! The host's side of a rendezvous running in the same process.
//!
//! A host whose rendezvous is bundled into its own process would otherwise
//! poll itself over HTTP, adding up to a poll interval to every join. The
//! rendezvous crate implements this trait on its session table (same rules,
//! same lock, same long-poll wake-ups as HTTP clients), and the jam engine
//! holds it as `Arc<dyn InProcessRendezvous>`, so the engine needs no HTTP
//! server to use it.

use std::collections::HashSet;
use std::time::Duration;

use crate::Code;

/// A session the host opened.
#[derive(Clone, PartialEq, Eq)]
pub struct HostOpened {
    pub code: Code,
    /// Proves to the rendezvous that later calls come from this host.
    pub host_token: String,
}

impl std::fmt::Debug for HostOpened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOpened")
            .field("code", &self.code)
            .field("host_token", &"***")
            .finish()
    }
}

/// One joiner's offer waiting for the host's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOffer {
    pub joiner_id: String,
    pub sdp: String,
}

/// Why the rendezvous refused a host call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The session is not (or no longer) on the rendezvous: open a new one.
    #[error("the session is gone from the rendezvous")]
    SessionGone,
    /// Anything else, in the rendezvous's words (full, wrong token, an
    /// answer already posted).
    #[error("the rendezvous refused: {0}")]
    Refused(String),
}

/// What a host does on a rendezvous in its own process.
#[async_trait::async_trait]
pub trait InProcessRendezvous: Send + Sync {
    /// Opens a session; `protect_answers` makes the rendezvous take answers
    /// for it only with the returned token. With `prefer`, the session gets
    /// that code when no live session holds it (a host that restarts keeps
    /// the code its people were told); otherwise a fresh one.
    fn host_open(
        &self,
        session_id: &str,
        display_name: &str,
        protect_answers: bool,
        prefer: Option<Code>,
    ) -> Result<HostOpened, HostError>;

    /// Waits up to `wait` for offers whose joinerId is not in `seen`, and
    /// returns them (empty when the wait ended with none). Keeps the session
    /// alive, as a host poll does. [`HostError::SessionGone`] when the
    /// session ended.
    async fn host_next_offers(
        &self,
        code: Code,
        host_token: &str,
        seen: &HashSet<String>,
        wait: Duration,
    ) -> Result<Vec<PendingOffer>, HostError>;

    /// Posts the host's answer for one joiner.
    fn host_answer(
        &self,
        code: Code,
        host_token: &str,
        joiner_id: &str,
        sdp: String,
    ) -> Result<(), HostError>;

    /// Frees the slot of a joiner that left (the wire protocol has no such
    /// request; there the offer lapses on its own). `true` if it held one.
    fn host_release(
        &self,
        code: Code,
        host_token: &str,
        joiner_id: &str,
    ) -> Result<bool, HostError>;

    /// Ends the session now; joiners get 404 from then on.
    fn host_close(&self, code: Code, host_token: &str) -> Result<(), HostError>;
}
