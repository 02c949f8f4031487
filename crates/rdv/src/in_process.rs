//! [`types::InProcessRendezvous`] on [`Rendezvous`]: the jam engine holds a
//! bundled rendezvous as `Arc<dyn InProcessRendezvous>` and so needs
//! nothing of this crate (no HTTP server) to host on it. Each method is the
//! inherent one of the same name, with the table's errors turned into the
//! two cases a host acts on: the session is gone (open a new one), or a
//! refusal in words.

use std::collections::HashSet;
use std::time::Duration;

use types::{Code, HostError, HostOpened, InProcessRendezvous, PendingOffer};

use crate::table::{AnswerError, HostError as TableHostError};
use crate::Rendezvous;

fn host_error(e: TableHostError) -> HostError {
    match e {
        TableHostError::NoSession => HostError::SessionGone,
        other => HostError::Refused(other.to_string()),
    }
}

#[async_trait::async_trait]
impl InProcessRendezvous for Rendezvous {
    fn host_open(
        &self,
        session_id: &str,
        display_name: &str,
        protect_answers: bool,
        prefer: Option<Code>,
    ) -> Result<HostOpened, HostError> {
        Rendezvous::host_open_preferring(self, session_id, display_name, protect_answers, prefer)
            .map(|c| HostOpened {
                code: c.code,
                host_token: c.host_token,
            })
            .map_err(|e| HostError::Refused(e.to_string()))
    }

    async fn host_next_offers(
        &self,
        code: Code,
        host_token: &str,
        seen: &HashSet<String>,
        wait: Duration,
    ) -> Result<Vec<PendingOffer>, HostError> {
        Rendezvous::host_next_offers(self, code, host_token, seen, wait)
            .await
            .map(|offers| {
                offers
                    .into_iter()
                    .map(|o| PendingOffer {
                        joiner_id: o.joiner_id,
                        sdp: o.sdp,
                    })
                    .collect()
            })
            .ok_or(HostError::SessionGone)
    }

    fn host_answer(
        &self,
        code: Code,
        host_token: &str,
        joiner_id: &str,
        sdp: String,
    ) -> Result<(), HostError> {
        Rendezvous::host_answer(self, code, host_token, joiner_id, sdp).map_err(|e| match e {
            AnswerError::NoSession => HostError::SessionGone,
            other => HostError::Refused(other.to_string()),
        })
    }

    fn host_release(
        &self,
        code: Code,
        host_token: &str,
        joiner_id: &str,
    ) -> Result<bool, HostError> {
        Rendezvous::host_release(self, code, host_token, joiner_id).map_err(host_error)
    }

    fn host_close(&self, code: Code, host_token: &str) -> Result<(), HostError> {
        Rendezvous::host_close(self, code, host_token).map_err(host_error)
    }
}
