//! The joiner's requests to a v3 rendezvous (`PROTOCOL.md`): verify the
//! code, post the offer, fetch the answer. Statuses are read the way
//! MidiEditor's joiner reads them, and turned into [`JoinError`]s a musician
//! can act on.

use std::time::Duration;

use serde_json::Value;

use super::JoinError;

/// Largest body read from the rendezvous: an answer SDP is at most 65,536
/// UTF-16 units (≤ 192 KiB of UTF-8); anything bigger is not a rendezvous.
const MAX_BODY: usize = 256 * 1024;

pub(crate) struct RdvClient {
    http: reqwest::Client,
    base: String,
    request_timeout: Duration,
}

/// What `GET /code/<c>` tells a joiner.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verified {
    pub session_id: String,
    pub display_name: String,
}

impl RdvClient {
    pub fn new(base: &str, request_timeout: Duration) -> RdvClient {
        let http = reqwest::Client::builder()
            // HTTP/1.1 only and no proxy from the environment, as the host's
            // signalling client: a LAN rendezvous is never behind a proxy.
            .no_proxy()
            .http1_only()
            .connect_timeout(request_timeout)
            .build()
            .unwrap_or_default();
        RdvClient {
            http,
            base: base.to_owned(),
            request_timeout,
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> JoinError {
        let detail = if e.is_timeout() {
            "no answer in time".to_owned()
        } else if e.is_connect() {
            "nothing answers there (connection refused or host unreachable)".to_owned()
        } else {
            let mut s = e.to_string();
            s.truncate(200);
            s
        };
        JoinError::Unreachable {
            url: self.base.clone(),
            detail,
        }
    }

    /// Sends and reads a capped body: `(status, JSON or Null)`.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<(u16, Value), JoinError> {
        let mut r = req
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = r.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| self.unreachable(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(JoinError::NotAJam {
                    url: self.base.clone(),
                    detail: format!("it sent more than {} KiB", MAX_BODY / 1024),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    fn message(v: &Value) -> String {
        v.get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error message")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect()
    }

    /// `GET /code/<c>`: the session's id (sent back in `hello`) and the
    /// host's display name.
    pub async fn verify(&self, code: &str) -> Result<Verified, JoinError> {
        let req = self.http.get(format!("{}/code/{code}", self.base));
        let (status, v) = self.send(req, self.request_timeout).await?;
        match status {
            200 => {
                let text = |k: &str| {
                    v.get(k)
                        .and_then(Value::as_str)
                        .map(|s| {
                            s.chars()
                                .filter(|c| !c.is_control())
                                .take(64)
                                .collect::<String>()
                        })
                        .unwrap_or_default()
                };
                Ok(Verified {
                    session_id: text("sessionId"),
                    display_name: text("displayName").trim().to_owned(),
                })
            }
            404 => Err(JoinError::WrongCode {
                code: code.to_owned(),
            }),
            429 => Err(JoinError::TooManyTries),
            _ => Err(JoinError::Rendezvous {
                detail: format!(
                    "checking the code answered HTTP {status}: {}",
                    Self::message(&v)
                ),
            }),
        }
    }

    /// `POST /code/<c>/joiner-offer`.
    pub async fn post_offer(
        &self,
        code: &str,
        joiner_id: &str,
        sdp: &str,
    ) -> Result<(), JoinError> {
        let body = serde_json::json!({ "joinerId": joiner_id, "sdp": sdp });
        let req = self
            .http
            .post(format!("{}/code/{code}/joiner-offer", self.base))
            .json(&body);
        let (status, v) = self.send(req, self.request_timeout).await?;
        let message = Self::message(&v);
        match status {
            200 => Ok(()),
            404 => Err(JoinError::WrongCode {
                code: code.to_owned(),
            }),
            // 503 "session is full (8 peers)" on v3; a 409 only about slots
            // on servers that count them that way.
            503 | 409 if message.contains("full") => Err(JoinError::JamFull { detail: message }),
            _ => Err(JoinError::Rendezvous {
                detail: format!("posting our offer answered HTTP {status}: {message}"),
            }),
        }
    }

    /// `GET /code/<c>/host-answer/<id>`, with `?wait=` when long-polling:
    /// `Some(sdp)` on 200, `None` on 404 ("not yet"). Any other status ends
    /// the join, as it does for MidiEditor.
    pub async fn poll_answer(
        &self,
        code: &str,
        joiner_id: &str,
        wait: Option<Duration>,
    ) -> Result<Option<String>, JoinError> {
        let mut url = format!("{}/code/{code}/host-answer/{joiner_id}", self.base);
        let mut timeout = self.request_timeout;
        if let Some(w) = wait {
            url.push_str(&format!("?wait={}", w.as_millis()));
            timeout += w;
        }
        let (status, v) = self.send(self.http.get(url), timeout).await?;
        match status {
            200 => match v.get("sdp").and_then(Value::as_str) {
                Some(sdp) if !sdp.is_empty() => Ok(Some(sdp.to_owned())),
                _ => Err(JoinError::Rendezvous {
                    detail: "the host's answer has no SDP".to_owned(),
                }),
            },
            404 => Ok(None),
            _ => Err(JoinError::Rendezvous {
                detail: format!(
                    "waiting for the host's answer got HTTP {status}: {}",
                    Self::message(&v)
                ),
            }),
        }
    }
}
