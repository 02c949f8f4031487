//! The one HTTP client of a v3 rendezvous (PROTOCOL.md, and our extensions
//! in `docs/rendezvous.md`), used by the host ([`crate::signal`]), the
//! joiner ([`crate::joiner`]) and the connection test ([`crate::check`]).
//!
//! - Every response body is read through one cap, [`MAX_BODY`], and a body
//!   announced or found larger is refused before it is buffered: a wrong
//!   URL can point at a huge download, or a hostile server at an endless
//!   one.
//! - Every failure is a [`RendezvousError`] whose message says what to do;
//!   transport failures are told apart by the whole chain of causes
//!   (reqwest wraps hyper wraps the I/O or TLS error).
//! - Statuses are read as MidiEditor reads them: 404 on a session route is
//!   "no such session", 404 on an answer poll is "not yet", anything else
//!   unexpected ends the call with the rendezvous's own `error` text.
//! - HTTP/1.1 only and no proxy from the environment: what MidiEditor
//!   speaks, and a LAN rendezvous is never behind a proxy.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use types::{Code, PendingOffer, RendezvousUrl};

/// Largest response body read from a rendezvous. The biggest honest answer
/// is an offers list: each SDP is at most 65,536 UTF-16 units (≤ 192 KiB of
/// UTF-8, a little more JSON-escaped), and real ones are a few KiB, so a
/// full session's list fits many times over.
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// Oldest rendezvous protocol version that works with MidiEditor 2.x.
pub const MIN_PROTOCOL_VERSION: u64 = 3;
/// The longest `?wait=` the protocol allows.
pub const MAX_WAIT: Duration = Duration::from_millis(25_000);

/// Why a request to the rendezvous failed, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RendezvousError {
    /// DNS has no address for the host name.
    #[error(
        "the name {host:?} does not resolve: check its spelling, or use the server's IP address"
    )]
    Unresolvable { host: String },
    /// The host answered, but nothing listens on the port.
    #[error("nothing answers at {addr} (connection refused): check the port, and that the rendezvous is running")]
    ConnectionRefused { addr: String },
    /// The TLS handshake failed (certificate, or not TLS at all).
    #[error(
        "the secure connection failed ({detail}): if the server speaks plain HTTP, use http://"
    )]
    Tls { detail: String },
    /// No answer within the request's budget.
    #[error("no answer within {:.1} s: the server may be down, or a firewall drops the traffic", *ms as f64 / 1000.0)]
    TimedOut { ms: u64 },
    /// Any other transport failure.
    #[error("cannot reach the rendezvous ({detail}): check this computer's network connection")]
    Network { detail: String },
    /// The body was larger than [`MAX_BODY`]; it was not read.
    #[error("the server sent more than {} KiB, which no rendezvous does: check the address", cap / 1024)]
    TooLarge { cap: usize },
    /// Something answered, but not a midi-rdv rendezvous.
    #[error("it answers, but it is not a midi-rdv rendezvous ({detail}): check the address, port and base path")]
    NotARendezvous { detail: String },
    /// A rendezvous speaking a protocol older than v3.
    #[error("the rendezvous speaks protocol version {}, older than v{MIN_PROTOCOL_VERSION}: it needs an update", version.map(|v| v.to_string()).unwrap_or_else(|| "(none given)".to_owned()))]
    ProtocolTooOld { version: Option<u64> },
    /// 404 on a session route: the session ended, or the code is wrong.
    #[error("the rendezvous has no session for the code {code}: the jam has ended, or the code is wrong")]
    NoSession { code: String },
    /// 429: the rendezvous locked this source out after unknown codes.
    #[error(
        "too many wrong codes were tried from this computer: wait two minutes, then try again"
    )]
    TooManyTries,
    /// 503 (or a 409 about slots): no free slot in the session.
    #[error("the jam is full ({message}): try again when someone leaves")]
    SessionFull { message: String },
    /// Any other unexpected status, with the rendezvous's `error` text.
    #[error("HTTP status {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        status: u16,
        message: Option<String>,
    },
    /// A reply the protocol does not allow.
    #[error("the rendezvous does not behave as protocol v3 requires: {detail}")]
    Misbehaved { detail: String },
}

/// What `/health` said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Request to complete body.
    pub latency_ms: f64,
    pub service: String,
    pub version: u64,
    pub protocol: Option<String>,
    pub max_peers_per_session: Option<u64>,
    /// Our extensions the rendezvous advertises (`long-poll`, ...).
    pub extensions: Vec<String>,
}

impl Health {
    /// The rendezvous holds `?wait=` polls (our extension).
    pub fn long_poll(&self) -> bool {
        self.extensions.iter().any(|e| e == "long-poll")
    }
}

/// A session the host opened.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    pub code: Code,
    /// Our extension's host token; `None` from a rendezvous that issues
    /// none (the public Worker).
    pub host_token: Option<String>,
}

/// What `GET /code/<c>` tells a joiner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Sent back in the joiner's `hello`.
    pub session_id: String,
    /// The host's name, trimmed; may be empty.
    pub display_name: String,
}

/// One reply, its body read within the cap.
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The rendezvous's `error` text, without control characters, bounded.
    fn message(&self) -> Option<String> {
        self.json()
            .get("error")
            .and_then(Value::as_str)
            .map(|m| m.chars().filter(|c| !c.is_control()).take(200).collect())
    }

    fn status_error(&self) -> RendezvousError {
        RendezvousError::Status {
            status: self.status,
            message: self.message(),
        }
    }
}

/// A client of one rendezvous. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: RendezvousUrl,
    request_timeout: Duration,
}

impl Client {
    /// `request_timeout` bounds each request (connect included); a
    /// long-poll gets its wait on top.
    pub fn new(base: RendezvousUrl, request_timeout: Duration) -> Client {
        let http = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .connect_timeout(request_timeout)
            .build()
            .unwrap_or_default();
        Client {
            http,
            base,
            request_timeout,
        }
    }

    pub fn url(&self) -> &RendezvousUrl {
        &self.base
    }

    /// Sends, and reads the body within [`MAX_BODY`].
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Reply, RendezvousError> {
        let exchange = async {
            let mut r = req
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| classify(&e, &self.base, timeout))?;
            let status = r.status().as_u16();
            let content_type = r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            // A body announced too large is refused unread.
            if r.content_length().is_some_and(|n| n > MAX_BODY as u64) {
                return Err(RendezvousError::TooLarge { cap: MAX_BODY });
            }
            let mut body = Vec::new();
            while let Some(chunk) = r
                .chunk()
                .await
                .map_err(|e| classify(&e, &self.base, timeout))?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(RendezvousError::TooLarge { cap: MAX_BODY });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Reply {
                status,
                content_type,
                body,
            })
        };
        // reqwest's timeout covers the body too; this bounds the whole
        // exchange even if a server trickles bytes just fast enough.
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RendezvousError::TimedOut {
                ms: timeout.as_millis() as u64,
            })?
    }

    fn bearer(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
        match token {
            Some(t) if !t.is_empty() => req.bearer_auth(t),
            _ => req,
        }
    }

    /// `GET /health` within `timeout`, as MidiEditor probes a rendezvous
    /// before hosting or joining, but reading the body too, so "something
    /// answered" and "a v3 rendezvous answered" are told apart.
    pub async fn health(&self, timeout: Duration) -> Result<Health, RendezvousError> {
        let started = Instant::now();
        let reply = self
            .send(self.http.get(self.base.health()), timeout)
            .await?;
        if reply.status != 200 {
            return Err(RendezvousError::Status {
                status: reply.status,
                message: None,
            });
        }
        let latency_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
        parse_health(&reply.content_type, &reply.body, latency_ms)
    }

    /// `POST /session`, asking for answer protection (our extension; the
    /// Worker ignores it and issues no token).
    pub async fn open(
        &self,
        session_id: &str,
        display_name: &str,
    ) -> Result<Opened, RendezvousError> {
        let body = serde_json::json!({
            "sessionId": session_id,
            "displayName": display_name,
            "protectAnswers": true,
        });
        let reply = self
            .send(
                self.http.post(self.base.session()).json(&body),
                self.request_timeout,
            )
            .await?;
        match reply.status {
            200 => {
                let v = reply.json();
                let code = v
                    .get("code")
                    .and_then(Value::as_str)
                    .and_then(Code::parse_route)
                    .ok_or_else(|| RendezvousError::Misbehaved {
                        detail: "POST /session returned no valid code".to_owned(),
                    })?;
                let host_token = v
                    .get("hostToken")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty() && t.len() <= 256)
                    .map(str::to_owned);
                Ok(Opened { code, host_token })
            }
            // A 404 on /session: the URL is not a rendezvous (often a
            // missing base path), not a lost session.
            404 => Err(RendezvousError::NotARendezvous {
                detail: "POST /session answered 404".to_owned(),
            }),
            _ => Err(reply.status_error()),
        }
    }

    /// `GET /code/<c>`: the session's id and the host's name.
    pub async fn verify(&self, code: &Code) -> Result<Verified, RendezvousError> {
        let reply = self
            .send(self.http.get(self.base.code(code)), self.request_timeout)
            .await?;
        match reply.status {
            200 => {
                let v = reply.json();
                let text = |k: &str| {
                    v.get(k)
                        .and_then(Value::as_str)
                        .map(|s| {
                            s.chars()
                                .filter(|c| !c.is_control())
                                .take(256)
                                .collect::<String>()
                        })
                        .unwrap_or_default()
                };
                Ok(Verified {
                    session_id: text("sessionId"),
                    display_name: text("displayName")
                        .chars()
                        .take(64)
                        .collect::<String>()
                        .trim()
                        .to_owned(),
                })
            }
            404 => Err(RendezvousError::NoSession {
                code: code.to_string(),
            }),
            429 => Err(RendezvousError::TooManyTries),
            _ => Err(reply.status_error()),
        }
    }

    /// `POST /code/<c>/joiner-offer`.
    pub async fn post_offer(
        &self,
        code: &Code,
        joiner_id: &str,
        sdp: &str,
    ) -> Result<(), RendezvousError> {
        let body = serde_json::json!({ "joinerId": joiner_id, "sdp": sdp });
        let reply = self
            .send(
                self.http.post(self.base.joiner_offer(code)).json(&body),
                self.request_timeout,
            )
            .await?;
        match reply.status {
            200 => Ok(()),
            404 => Err(RendezvousError::NoSession {
                code: code.to_string(),
            }),
            // 503 "session is full (8 peers)" on v3; a 409 only about slots
            // on servers that count them that way.
            503 | 409 if reply.message().is_some_and(|m| m.contains("full")) => {
                Err(RendezvousError::SessionFull {
                    message: reply.message().unwrap_or_default(),
                })
            }
            _ => Err(reply.status_error()),
        }
    }

    /// `GET /code/<c>/joiner-offers` (the host's poll), long-polled with
    /// `?wait=` when given: the offers in arrival order, those without a
    /// joinerId or an SDP left out.
    pub async fn list_offers(
        &self,
        code: &Code,
        host_token: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<Vec<PendingOffer>, RendezvousError> {
        let wait = wait.map(|w| w.min(MAX_WAIT));
        let req = Self::bearer(
            self.http.get(self.base.joiner_offers(code, wait)),
            host_token,
        );
        let reply = self
            .send(req, self.request_timeout + wait.unwrap_or_default())
            .await?;
        match reply.status {
            200 => {
                let v = reply.json();
                let list = v.get("offers").and_then(Value::as_array).ok_or_else(|| {
                    RendezvousError::Misbehaved {
                        detail: "joiner-offers has no offers list".to_owned(),
                    }
                })?;
                Ok(list
                    .iter()
                    .filter_map(|o| {
                        let joiner_id = o.get("joinerId")?.as_str()?;
                        let sdp = o.get("sdp")?.as_str()?;
                        (!joiner_id.is_empty() && !sdp.is_empty()).then(|| PendingOffer {
                            joiner_id: joiner_id.to_owned(),
                            sdp: sdp.to_owned(),
                        })
                    })
                    .collect())
            }
            404 => Err(RendezvousError::NoSession {
                code: code.to_string(),
            }),
            _ => Err(reply.status_error()),
        }
    }

    /// `POST /code/<c>/host-answer`, with the host token when there is one.
    pub async fn post_answer(
        &self,
        code: &Code,
        host_token: Option<&str>,
        joiner_id: &str,
        sdp: &str,
    ) -> Result<(), RendezvousError> {
        let body = serde_json::json!({ "joinerId": joiner_id, "sdp": sdp });
        let req = Self::bearer(
            self.http.post(self.base.host_answer(code)).json(&body),
            host_token,
        );
        let reply = self.send(req, self.request_timeout).await?;
        match reply.status {
            200 => Ok(()),
            404 => Err(RendezvousError::NoSession {
                code: code.to_string(),
            }),
            _ => Err(reply.status_error()),
        }
    }

    /// `GET /code/<c>/host-answer/<id>` (the joiner's poll), long-polled
    /// with `?wait=` when given: `Some(sdp)` on 200, `None` on 404 ("not
    /// yet"). Any other status is an error, as it ends MidiEditor's join.
    pub async fn poll_answer(
        &self,
        code: &Code,
        joiner_id: &str,
        wait: Option<Duration>,
    ) -> Result<Option<String>, RendezvousError> {
        let wait = wait.map(|w| w.min(MAX_WAIT));
        let reply = self
            .send(
                self.http.get(self.base.answer_for(code, joiner_id, wait)),
                self.request_timeout + wait.unwrap_or_default(),
            )
            .await?;
        match reply.status {
            200 => match reply.json().get("sdp").and_then(Value::as_str) {
                Some(sdp) if !sdp.is_empty() => Ok(Some(sdp.to_owned())),
                _ => Err(RendezvousError::Misbehaved {
                    detail: "the host's answer has no SDP".to_owned(),
                }),
            },
            404 => Ok(None),
            _ => Err(reply.status_error()),
        }
    }
}

/// Reads `/health`'s body as a v3 rendezvous's JSON.
fn parse_health(
    content_type: &str,
    body: &[u8],
    latency_ms: f64,
) -> Result<Health, RendezvousError> {
    let not = |detail: String| RendezvousError::NotARendezvous { detail };
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).to_ascii_lowercase();
            let what = if text.contains("<html") || text.contains("<!doctype") {
                "it sent a web page (HTML)".to_owned()
            } else if body.is_empty() {
                "it sent an empty answer".to_owned()
            } else if content_type.is_empty() {
                "its answer is not JSON".to_owned()
            } else {
                format!(
                    "its answer is not JSON ({})",
                    content_type.chars().take(80).collect::<String>()
                )
            };
            return Err(not(what));
        }
    };
    let Some(object) = value.as_object() else {
        return Err(not("its answer is JSON but not an object".to_owned()));
    };
    match object.get("service").and_then(Value::as_str) {
        Some("midi-rdv") => {}
        Some(other) => {
            return Err(not(format!(
                "it says it is {:?}, not \"midi-rdv\"",
                other.chars().take(40).collect::<String>()
            )))
        }
        None => return Err(not("its JSON has no \"service\": \"midi-rdv\"".to_owned())),
    }
    let version = object.get("version").and_then(Value::as_u64);
    match version {
        Some(v) if v >= MIN_PROTOCOL_VERSION => {}
        other => return Err(RendezvousError::ProtocolTooOld { version: other }),
    }
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(80).collect::<String>())
    };
    Ok(Health {
        latency_ms,
        service: "midi-rdv".to_owned(),
        version: version.unwrap_or(MIN_PROTOCOL_VERSION),
        protocol: text("protocol"),
        max_peers_per_session: object.get("maxPeersPerSession").and_then(Value::as_u64),
        extensions: object
            .get("extensions")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .take(32)
                    .map(|s| s.chars().take(40).collect())
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Turns a reqwest error into a reason a person can act on, by looking at
/// the whole chain of causes.
fn classify(err: &reqwest::Error, base: &RendezvousUrl, timeout: Duration) -> RendezvousError {
    let mut io_kinds = Vec::new();
    let mut text = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut depth = 0;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kinds.push(io.kind());
        }
        text.push_str(&e.to_string().to_ascii_lowercase());
        text.push_str(" | ");
        source = e.source();
        depth += 1;
        if depth > 16 {
            break;
        }
    }
    classify_parts(err.is_timeout(), &io_kinds, &text, base, timeout)
}

fn classify_parts(
    is_timeout: bool,
    io_kinds: &[std::io::ErrorKind],
    text: &str,
    base: &RendezvousUrl,
    timeout: Duration,
) -> RendezvousError {
    use std::io::ErrorKind;
    let last_cause = |fallback: &str| -> String {
        text.split(" | ")
            .filter(|p| !p.is_empty())
            .last()
            .unwrap_or(fallback)
            .chars()
            .take(200)
            .collect()
    };
    if is_timeout || io_kinds.contains(&ErrorKind::TimedOut) {
        return RendezvousError::TimedOut {
            ms: timeout.as_millis() as u64,
        };
    }
    if io_kinds.contains(&ErrorKind::ConnectionRefused) || text.contains("connection refused") {
        let host = if base.host().contains(':') {
            format!("[{}]", base.host())
        } else {
            base.host().to_owned()
        };
        return RendezvousError::ConnectionRefused {
            addr: format!("{host}:{}", base.port()),
        };
    }
    if text.contains("dns error")
        || text.contains("failed to lookup address")
        || text.contains("name or service not known")
        || text.contains("no such host")
        || text.contains("nodename nor servname")
    {
        return RendezvousError::Unresolvable {
            host: base.host().to_owned(),
        };
    }
    if text.contains("tls")
        || text.contains("certificate")
        || text.contains("corrupt message")
        || text.contains("invalidcontenttype")
        || text.contains("handshake")
        || text.contains("unknownissuer")
    {
        return RendezvousError::Tls {
            detail: last_cause("handshake failed"),
        };
    }
    if io_kinds.contains(&ErrorKind::ConnectionReset)
        || io_kinds.contains(&ErrorKind::ConnectionAborted)
    {
        return RendezvousError::Network {
            detail: "the connection was closed before an answer (a proxy, firewall or non-HTTP service?)".to_owned(),
        };
    }
    RendezvousError::Network {
        detail: last_cause("unknown error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn health_bodies_are_told_apart() {
        let ok = br#"{"service":"midi-rdv","version":3,"protocol":"joiner-initiated-multi-peer","maxPeersPerSession":8,"docs":"x","extensions":["long-poll"]}"#;
        let info = parse_health("application/json", ok, 1.0).unwrap();
        assert_eq!(info.version, 3);
        assert!(info.long_poll());
        assert_eq!(info.max_peers_per_session, Some(8));

        let html = b"<!DOCTYPE html><html><body>router</body></html>";
        match parse_health("text/html", html, 1.0) {
            Err(RendezvousError::NotARendezvous { detail }) => {
                assert!(detail.contains("HTML"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_health("application/json", br#"{"status":"ok"}"#, 1.0),
            Err(RendezvousError::NotARendezvous { .. })
        ));
        assert!(matches!(
            parse_health("application/json", br#"[1,2]"#, 1.0),
            Err(RendezvousError::NotARendezvous { .. })
        ));
        assert_eq!(
            parse_health(
                "application/json",
                br#"{"service":"midi-rdv","version":2}"#,
                1.0
            ),
            Err(RendezvousError::ProtocolTooOld { version: Some(2) })
        );
        assert_eq!(
            parse_health("application/json", br#"{"service":"midi-rdv"}"#, 1.0),
            Err(RendezvousError::ProtocolTooOld { version: None })
        );
    }

    #[test]
    fn reqwest_error_chains_are_classified() {
        let base = RendezvousUrl::parse("http://rdv.example:8787").unwrap();
        let t = Duration::from_secs(3);
        assert_eq!(
            classify_parts(false, &[ErrorKind::ConnectionRefused], "", &base, t),
            RendezvousError::ConnectionRefused {
                addr: "rdv.example:8787".to_owned()
            }
        );
        assert_eq!(
            classify_parts(
                false,
                &[],
                "error sending request | client error (connect) | dns error: failed to lookup address information: name or service not known | ",
                &base,
                t
            ),
            RendezvousError::Unresolvable {
                host: "rdv.example".to_owned()
            }
        );
        assert!(matches!(
            classify_parts(
                false,
                &[],
                "client error (connect) | invalid peer certificate: unknownissuer | ",
                &base,
                t
            ),
            RendezvousError::Tls { .. }
        ));
        assert_eq!(
            classify_parts(true, &[], "operation timed out", &base, t),
            RendezvousError::TimedOut { ms: 3000 }
        );
    }

    #[test]
    fn messages_say_what_to_do() {
        let too_large = RendezvousError::TooLarge { cap: MAX_BODY }.to_string();
        assert!(too_large.contains("more than 2048 KiB"), "{too_large}");
        assert!(RendezvousError::TimedOut { ms: 2500 }
            .to_string()
            .contains("2.5 s"));
        assert_eq!(
            RendezvousError::Status {
                status: 502,
                message: None
            }
            .to_string(),
            "HTTP status 502"
        );
    }
}
