//! Reaching the rendezvous as a host: the bundled one in this process, or a
//! remote one (the public Worker, or another copy of our server) over HTTP.
//!
//! The bundled case never polls itself over HTTP: it waits on the table
//! directly, so an offer reaches the host the moment it is posted. The remote
//! case behaves as a MidiEditor host does (1 s polls of `joiner-offers`),
//! which is what every v3 rendezvous is built to serve.

use std::collections::HashSet;
use std::time::Duration;

use rdv::code::Code;
use rdv::Rendezvous;
use serde_json::Value;

/// Where the host registers its session.
#[derive(Clone)]
pub enum Target {
    /// The rendezvous running in this process.
    Bundled(Rendezvous),
    /// A rendezvous base URL, e.g. `http://10.0.0.2:8787` or
    /// `https://rdv.example.org/rdv` (a trailing `/` is ignored).
    Remote(String),
}

/// A session this host holds.
#[derive(Debug, Clone)]
pub struct HostSession {
    pub code: String,
    /// Our extension's host token; empty when the rendezvous does not issue
    /// one (the public Worker).
    token: String,
}

/// One joiner's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub joiner_id: String,
    pub sdp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// The session is no longer on the rendezvous (it answered 404): register
    /// again.
    #[error("the session is gone from the rendezvous")]
    SessionGone,
    /// The rendezvous answered with an error status; the message is its own.
    #[error("the rendezvous refused ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The rendezvous could not be reached; worth retrying.
    #[error("cannot reach the rendezvous: {0}")]
    Unreachable(String),
    /// Something answered, but not a v3 rendezvous.
    #[error("unexpected answer from the rendezvous: {0}")]
    BadResponse(String),
}

/// Host-side client of one rendezvous.
#[derive(Clone)]
pub struct Signaller {
    target: Target,
    http: reqwest::Client,
    /// Interval between remote polls (MidiEditor's host uses 1 s).
    poll_every: Duration,
}

/// How long one bundled wait lasts before the host loop gets control back;
/// long, because a new offer ends the wait at once anyway.
const BUNDLED_WAIT: Duration = Duration::from_secs(20);

impl Signaller {
    pub fn new(target: Target) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .timeout(Duration::from_secs(8))
            .build()
            .unwrap_or_default();
        Signaller {
            target,
            http,
            poll_every: Duration::from_secs(1),
        }
    }

    fn base(&self) -> Option<&str> {
        match &self.target {
            Target::Remote(u) => Some(u.trim().trim_end_matches('/')),
            Target::Bundled(_) => None,
        }
    }

    /// The rendezvous's health check, as MidiEditor does it before hosting
    /// (3 s budget, only the status matters).
    pub async fn health(&self) -> Result<(), SignalError> {
        let Some(base) = self.base() else {
            return Ok(());
        };
        let r = self
            .http
            .get(format!("{base}/health"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|e| SignalError::Unreachable(describe(&e)))?;
        if r.status().as_u16() == 200 {
            Ok(())
        } else {
            Err(SignalError::BadResponse(format!(
                "/health answered {}",
                r.status().as_u16()
            )))
        }
    }

    /// Registers a new session and returns its code.
    pub async fn open(
        &self,
        session_id: &str,
        display_name: &str,
    ) -> Result<HostSession, SignalError> {
        match &self.target {
            Target::Bundled(rdv) => {
                let c = rdv.host_open(session_id, display_name, true).map_err(|e| {
                    SignalError::Refused {
                        status: 503,
                        message: e.to_string(),
                    }
                })?;
                Ok(HostSession {
                    code: c.code.to_string(),
                    token: c.host_token,
                })
            }
            Target::Remote(_) => {
                let base = self.base().unwrap_or_default();
                // protectAnswers is our extension; the Worker ignores it and
                // returns no token, and then we simply send none.
                let body = serde_json::json!({
                    "sessionId": session_id,
                    "displayName": display_name,
                    "protectAnswers": true,
                });
                let v = self
                    .send(self.http.post(format!("{base}/session")).json(&body))
                    .await
                    .map_err(|e| match e {
                        // A 404 on /session: the URL is not a rendezvous
                        // (often a missing base path), not a lost session.
                        SignalError::SessionGone => SignalError::BadResponse(
                            "no rendezvous at this URL (POST /session answered 404)".into(),
                        ),
                        other => other,
                    })?;
                let code = v["code"]
                    .as_str()
                    .filter(|c| Code::parse_route(c).is_some())
                    .ok_or_else(|| SignalError::BadResponse("no code in the reply".into()))?;
                Ok(HostSession {
                    code: code.to_owned(),
                    token: v["hostToken"].as_str().unwrap_or("").to_owned(),
                })
            }
        }
    }

    /// Waits for offers from joiners not in `seen`. Bundled: returns as soon
    /// as one is posted. Remote: one poll, a poll interval after the last.
    /// May return an empty list; the caller just asks again.
    pub async fn next_offers(
        &self,
        s: &HostSession,
        seen: &HashSet<String>,
    ) -> Result<Vec<Offer>, SignalError> {
        match &self.target {
            Target::Bundled(rdv) => {
                let code = Code::parse_route(&s.code).ok_or(SignalError::SessionGone)?;
                let offers = rdv
                    .host_next_offers(code, &s.token, seen, BUNDLED_WAIT)
                    .await
                    .ok_or(SignalError::SessionGone)?;
                Ok(offers
                    .into_iter()
                    .map(|o| Offer {
                        joiner_id: o.joiner_id,
                        sdp: o.sdp,
                    })
                    .collect())
            }
            Target::Remote(_) => {
                tokio::time::sleep(self.poll_every).await;
                let base = self.base().unwrap_or_default();
                let req = self.authorised(
                    self.http
                        .get(format!("{base}/code/{}/joiner-offers", s.code)),
                    s,
                );
                let v = self.send(req).await?;
                let list = v["offers"]
                    .as_array()
                    .ok_or_else(|| SignalError::BadResponse("no offers list".into()))?;
                Ok(list
                    .iter()
                    .filter_map(|o| {
                        let joiner_id = o["joinerId"].as_str()?;
                        let sdp = o["sdp"].as_str()?;
                        (!seen.contains(joiner_id) && !sdp.is_empty()).then(|| Offer {
                            joiner_id: joiner_id.to_owned(),
                            sdp: sdp.to_owned(),
                        })
                    })
                    .collect())
            }
        }
    }

    /// Posts our answer for one joiner.
    pub async fn answer(
        &self,
        s: &HostSession,
        joiner_id: &str,
        sdp: String,
    ) -> Result<(), SignalError> {
        match &self.target {
            Target::Bundled(rdv) => {
                let code = Code::parse_route(&s.code).ok_or(SignalError::SessionGone)?;
                rdv.host_answer(code, &s.token, joiner_id, sdp)
                    .map_err(|e| match e {
                        rdv::table::AnswerError::NoSession => SignalError::SessionGone,
                        other => SignalError::Refused {
                            status: 409,
                            message: other.to_string(),
                        },
                    })
            }
            Target::Remote(_) => {
                let base = self.base().unwrap_or_default();
                let body = serde_json::json!({ "joinerId": joiner_id, "sdp": sdp });
                let req = self.authorised(
                    self.http
                        .post(format!("{base}/code/{}/host-answer", s.code))
                        .json(&body),
                    s,
                );
                self.send(req).await.map(|_| ())
            }
        }
    }

    /// Frees the slot of a joiner that left, on the bundled rendezvous (a
    /// v3 rendezvous has no such request; there the offer lapses on its own).
    pub fn release(&self, s: &HostSession, joiner_id: &str) {
        if let Target::Bundled(rdv) = &self.target {
            if let Some(code) = Code::parse_route(&s.code) {
                let _ = rdv.host_release(code, &s.token, joiner_id);
            }
        }
    }

    /// Ends the session. The bundled rendezvous drops it at once; the v3
    /// protocol has no way to delete a remote session, which lapses one TTL
    /// after our last poll.
    pub async fn close(&self, s: &HostSession) {
        if let Target::Bundled(rdv) = &self.target {
            if let Some(code) = Code::parse_route(&s.code) {
                let _ = rdv.host_close(code, &s.token);
            }
        }
    }

    fn authorised(&self, req: reqwest::RequestBuilder, s: &HostSession) -> reqwest::RequestBuilder {
        if s.token.is_empty() {
            req
        } else {
            req.bearer_auth(&s.token)
        }
    }

    /// Sends a request and reads a JSON answer, mapping statuses the way a
    /// MidiEditor host does: 404 means the session is gone.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, SignalError> {
        let r = req
            .send()
            .await
            .map_err(|e| SignalError::Unreachable(describe(&e)))?;
        let status = r.status().as_u16();
        let text = r
            .text()
            .await
            .map_err(|e| SignalError::Unreachable(describe(&e)))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            200 => Ok(v),
            404 => Err(SignalError::SessionGone),
            _ => Err(SignalError::Refused {
                status,
                message: v["error"]
                    .as_str()
                    .unwrap_or("no error message")
                    .chars()
                    .take(200)
                    .collect(),
            }),
        }
    }
}

/// A reqwest error in words a user can act on.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or host unreachable".into()
    } else {
        let mut s = e.to_string();
        s.truncate(200);
        s
    }
}
