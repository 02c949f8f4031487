//! The rendezvous stages and the WebRTC loopback through them, as
//! MidiEditor's connection test runs them: host and joiner side in one
//! process, each with its own [`Client`] of the rendezvous.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use types::{Code, RendezvousUrl};

use super::*;
use crate::framing;
use crate::offer::{Offerer, OffererEvent};
use crate::rendezvous::Client;
use crate::rtc::{answer_offer, Answered, LinkEvent, LinkState, RtcConfig};

// ---------------------------------------------------------------- loopback

/// Records stage outcomes and reports them as they happen.
struct Recorder {
    stages: Vec<StageReport>,
    sink: Sink,
    running: Option<(StageId, Instant)>,
}

impl Recorder {
    fn new(sink: Sink) -> Self {
        let stages = StageId::ALL
            .iter()
            .map(|&stage| StageReport {
                stage,
                label: stage.label().to_owned(),
                status: Status::Pending,
                duration_ms: None,
                detail: None,
                error: None,
                hint: None,
            })
            .collect();
        Recorder {
            stages,
            sink,
            running: None,
        }
    }

    fn slot(&mut self, stage: StageId) -> &mut StageReport {
        let index = StageId::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        &mut self.stages[index]
    }

    fn start(&mut self, stage: StageId) {
        self.running = Some((stage, Instant::now()));
        self.slot(stage).status = Status::Running;
        (self.sink)(Progress::StageStarted {
            stage,
            label: stage.label().to_owned(),
        });
    }

    fn elapsed(&self, stage: StageId) -> Option<f64> {
        self.running
            .filter(|(s, _)| *s == stage)
            .map(|(_, at)| ms(at.elapsed()))
    }

    fn pass(&mut self, stage: StageId, detail: String) {
        let duration = self.elapsed(stage);
        let slot = self.slot(stage);
        slot.status = Status::Passed;
        slot.duration_ms = duration;
        slot.detail = Some(detail);
        let report = slot.clone();
        self.running = None;
        (self.sink)(Progress::StageFinished { report });
    }

    fn fail(&mut self, stage: StageId, error: CheckError) {
        let duration = self.elapsed(stage);
        let slot = self.slot(stage);
        slot.status = Status::Failed;
        slot.duration_ms = duration;
        slot.detail = Some(error.to_string());
        slot.hint = Some(error.hint());
        slot.error = Some(error);
        let report = slot.clone();
        self.running = None;
        (self.sink)(Progress::StageFinished { report });
    }

    /// Marks every stage that never ran as skipped.
    fn skip_rest(&mut self) {
        for i in 0..self.stages.len() {
            if self.stages[i].status == Status::Pending {
                self.stages[i].status = Status::Skipped;
                let report = self.stages[i].clone();
                (self.sink)(Progress::StageFinished { report });
            }
        }
    }
}

pub(crate) struct LoopbackOutcome {
    pub verdict: Verdict,
    pub failed_stage: Option<StageId>,
    pub code: Option<String>,
    pub health: Option<HealthInfo>,
    pub stages: Vec<StageReport>,
    pub timings: Timings,
}

/// What the stages found, filled in as they go (so a timeout keeps it).
#[derive(Default)]
struct Found {
    code: Option<String>,
    health: Option<HealthInfo>,
    answer_posted_at: Option<Instant>,
    connected_at: Option<Instant>,
    round_trip: Option<Duration>,
}

pub(crate) async fn loopback(cfg: &CheckConfig, sink: Sink) -> LoopbackOutcome {
    let started = Instant::now();
    let mut rec = Recorder::new(sink);
    let mut found = Found::default();
    let result =
        match tokio::time::timeout(cfg.timeout, run_stages(cfg, &mut rec, &mut found)).await {
            Ok(result) => result,
            Err(_) => {
                let error = CheckError::TimedOut {
                    ms: cfg.timeout.as_millis() as u64,
                };
                let stage = rec.running.map(|(s, _)| s).unwrap_or(StageId::Health);
                rec.fail(stage, error.clone());
                Err((stage, error))
            }
        };
    rec.skip_rest();

    let at = |instant: Option<Instant>| instant.map(|i| ms(i.duration_since(started)));
    let rendezvous_ms = at(found.answer_posted_at);
    let handshake_ms = match (found.answer_posted_at, found.connected_at) {
        (Some(a), Some(c)) => Some(ms(c.duration_since(a))),
        _ => None,
    };
    let timings = Timings {
        rendezvous_ms,
        handshake_ms,
        round_trip_ms: found.round_trip.map(ms),
        total_ms: ms(started.elapsed()),
    };
    let (verdict, failed_stage) = match &result {
        Ok(()) => (
            Verdict::for_success(
                rendezvous_ms.unwrap_or(f64::MAX),
                handshake_ms.unwrap_or(f64::MAX),
            ),
            None,
        ),
        Err((stage, error)) => {
            let inconclusive = found.code.is_some() && error.is_transport_or_timeout();
            (
                if inconclusive {
                    Verdict::Inconclusive
                } else {
                    Verdict::Failed
                },
                Some(*stage),
            )
        }
    };
    LoopbackOutcome {
        verdict,
        failed_stage,
        code: found.code,
        health: found.health,
        stages: rec.stages,
        timings,
    }
}

/// Runs `f` as stage `stage`: records the start, and the pass or failure.
async fn stage<T, Fut>(
    rec: &mut Recorder,
    stage: StageId,
    f: Fut,
    describe: impl FnOnce(&T) -> String,
) -> Result<T, (StageId, CheckError)>
where
    Fut: Future<Output = Result<T, CheckError>>,
{
    rec.start(stage);
    match f.await {
        Ok(value) => {
            rec.pass(stage, describe(&value));
            Ok(value)
        }
        Err(error) => {
            rec.fail(stage, error.clone());
            Err((stage, error))
        }
    }
}

/// A spawned task aborted when dropped, so that a timeout or an early
/// return never leaves a poller or a half-made connection behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> AbortOnDrop<T> {
    async fn join(&mut self) -> Result<T, CheckError> {
        (&mut self.0).await.map_err(|e| CheckError::WebRtc {
            detail: format!("internal task failed: {e}"),
        })
    }
}

async fn run_stages(
    cfg: &CheckConfig,
    rec: &mut Recorder,
    found: &mut Found,
) -> Result<(), (StageId, CheckError)> {
    let rtc = RtcConfig {
        ice_servers: Vec::new(),
        gather_timeout: cfg.gather_timeout,
        bind_ips: cfg.bind_ips.clone(),
        resolve_mdns: false,
    };

    // Health.
    let (host, health) = stage(
        rec,
        StageId::Health,
        async {
            let url = parse_url(&cfg.rendezvous_url)?;
            let host = Client::new(url, REQUEST_TIMEOUT);
            let health = host.health(cfg.health_timeout).await?;
            Ok((host, health))
        },
        |(_, h): &(Client, HealthInfo)| {
            let mut text = format!("midi-rdv v{}", h.version);
            if let Some(p) = &h.protocol {
                text.push_str(&format!(" ({p})"));
            }
            if !h.extensions.is_empty() {
                text.push_str(&format!(", extensions: {}", h.extensions.join(", ")));
            }
            text
        },
    )
    .await?;
    let long_poll = health.long_poll();
    found.health = Some(health);
    // A client of its own: the joiner side shares no connection with the host.
    let joiner = Client::new(host.url().clone(), REQUEST_TIMEOUT);

    // Session (host side).
    let session_id = format!("connection-test-{}", uuid::Uuid::new_v4());
    let session = stage(
        rec,
        StageId::Session,
        async { Ok(host.open(&session_id, "Connection test").await?) },
        |s: &crate::rendezvous::Opened| format!("code {}", s.code),
    )
    .await?;
    found.code = Some(session.code.to_string());
    let code = session.code;

    // From now on the host side waits for our offer, as MidiEditor's host
    // starts polling right after its session is posted.
    let joiner_id = uuid::Uuid::new_v4().to_string();
    let mut host_task = AbortOnDrop(tokio::spawn(host_side(
        host.clone(),
        code,
        session.host_token.clone(),
        joiner_id.clone(),
        rtc.clone(),
        long_poll,
    )));

    // Verify (joiner side).
    stage(
        rec,
        StageId::Verify,
        verify_code(&joiner, &code, &session_id),
        |_| format!("code {code} found"),
    )
    .await?;

    // Offer (joiner side).
    let mut offerer = stage(
        rec,
        StageId::Offer,
        make_and_post_offer(&joiner, &code, &joiner_id, &rtc),
        |o: &Offerer| {
            let candidates = o
                .offer_sdp()
                .lines()
                .filter(|l| l.starts_with("a=candidate:"))
                .count();
            format!("offer with {candidates} candidate(s) posted")
        },
    )
    .await?;

    // The joiner polls for the answer in parallel with the host's work, as
    // MidiEditor starts polling right after posting its offer.
    let mut answer_poll = AbortOnDrop(tokio::spawn(poll_answer(
        joiner.clone(),
        code,
        joiner_id.clone(),
        long_poll,
    )));

    // Answer (host side).
    let mut answered = stage(
        rec,
        StageId::Answer,
        async { host_task.join().await? },
        |a: &Answered| {
            let candidates = a
                .answer_sdp
                .lines()
                .filter(|l| l.starts_with("a=candidate:"))
                .count();
            format!("answer with {candidates} candidate(s) posted")
        },
    )
    .await?;
    found.answer_posted_at = Some(Instant::now());

    // Connect: the joiner gets the answer, ICE + DTLS + SCTP.
    stage(
        rec,
        StageId::Connect,
        async {
            let answer_sdp = answer_poll.join().await??;
            offerer
                .accept(&answer_sdp)
                .await
                .map_err(|e| CheckError::WebRtc {
                    detail: e.to_string(),
                })?;
            wait_both_open(&mut answered, &mut offerer).await
        },
        |_| "data channel open on both sides".to_owned(),
    )
    .await?;
    found.connected_at = Some(Instant::now());

    // Round trip.
    let rtt = stage(
        rec,
        StageId::RoundTrip,
        ping_pong(&mut answered, &mut offerer),
        |rtt: &Duration| format!("{:.1} ms", ms(*rtt)),
    )
    .await?;
    found.round_trip = Some(rtt);

    answered.link.close().await;
    offerer.close().await;
    Ok(())
}

/// The rendezvous URL, or why it is not one.
fn parse_url(raw: &str) -> Result<RendezvousUrl, CheckError> {
    RendezvousUrl::parse(raw).map_err(|e| CheckError::BadUrl {
        url: raw.trim().to_owned(),
        detail: e.to_string(),
    })
}

/// `GET {url}/health` within `timeout`, the way MidiEditor probes a
/// rendezvous, but reading the body too, so that "something answered" and
/// "a v3 rendezvous answered" are told apart.
pub async fn check_health(url: &str, timeout: Duration) -> Result<HealthInfo, CheckError> {
    let url = parse_url(url)?;
    Ok(Client::new(url, REQUEST_TIMEOUT).health(timeout).await?)
}

async fn verify_code(joiner: &Client, code: &Code, session_id: &str) -> Result<(), CheckError> {
    let verified = joiner.verify(code).await.map_err(|e| match e {
        crate::rendezvous::RendezvousError::NoSession { .. } => CheckError::Rendezvous {
            detail: format!("it does not know the code {code} it just gave out"),
        },
        other => other.into(),
    })?;
    if verified.session_id == session_id {
        Ok(())
    } else {
        Err(CheckError::Rendezvous {
            detail: format!("GET /code/{code} did not return our session"),
        })
    }
}

async fn make_and_post_offer(
    joiner: &Client,
    code: &Code,
    joiner_id: &str,
    rtc: &RtcConfig,
) -> Result<Offerer, CheckError> {
    let offerer = Offerer::new(rtc, CHANNEL_LABEL)
        .await
        .map_err(|e| CheckError::WebRtc {
            detail: e.to_string(),
        })?;
    joiner
        .post_offer(code, joiner_id, offerer.offer_sdp())
        .await?;
    Ok(offerer)
}

/// The host side: waits for our joiner's offer, answers it with its own
/// PeerConnection, posts the answer.
async fn host_side(
    host: Client,
    code: Code,
    token: Option<String>,
    joiner_id: String,
    rtc: RtcConfig,
    long_poll: bool,
) -> Result<Answered, CheckError> {
    let mut first = true;
    let offer_sdp = loop {
        let wait = if long_poll {
            Some(Duration::from_millis(LONG_POLL_MS))
        } else {
            if !first {
                tokio::time::sleep(HOST_POLL).await;
            }
            None
        };
        first = false;
        let offers = host
            .list_offers(&code, token.as_deref(), wait)
            .await
            .map_err(|e| match e {
                crate::rendezvous::RendezvousError::NoSession { .. } => CheckError::Rendezvous {
                    detail: "the session vanished from the rendezvous (404 on joiner-offers)"
                        .to_owned(),
                },
                other => other.into(),
            })?;
        if let Some(ours) = offers.into_iter().find(|o| o.joiner_id == joiner_id) {
            break ours.sdp;
        }
    };
    let answered = answer_offer(&offer_sdp, &rtc)
        .await
        .map_err(|e| CheckError::WebRtc {
            detail: e.to_string(),
        })?;
    host.post_answer(&code, token.as_deref(), &joiner_id, &answered.answer_sdp)
        .await?;
    Ok(answered)
}

/// The joiner's answer poll: 404 "not yet" until the host has answered.
async fn poll_answer(
    joiner: Client,
    code: Code,
    joiner_id: String,
    long_poll: bool,
) -> Result<String, CheckError> {
    let mut first = true;
    loop {
        let wait = if long_poll {
            Some(Duration::from_millis(LONG_POLL_MS))
        } else {
            if !first {
                tokio::time::sleep(JOINER_POLL).await;
            }
            None
        };
        first = false;
        if let Some(sdp) = joiner.poll_answer(&code, &joiner_id, wait).await? {
            return Ok(sdp);
        }
    }
}

/// Waits until the channel is open on both sides, or either side fails.
async fn wait_both_open(answered: &mut Answered, offerer: &mut Offerer) -> Result<(), CheckError> {
    let (mut host_open, mut joiner_open) = (false, false);
    let mut joiner_state = offerer.state_watch();
    while !(host_open && joiner_open) {
        tokio::select! {
            event = answered.events.recv(), if !host_open => match event {
                Some(LinkEvent::ChannelOpen { .. }) => host_open = true,
                Some(LinkEvent::State(LinkState::Failed | LinkState::Closed)) | None => {
                    return Err(CheckError::ConnectFailed {
                        detail: "the host side's connection failed (ICE found no working address pair, or DTLS failed)".to_owned(),
                    })
                }
                Some(_) => {}
            },
            event = offerer.next_event(), if !joiner_open => match event {
                Some(OffererEvent::Open) => joiner_open = true,
                Some(OffererEvent::Closed) | None => {
                    return Err(CheckError::ConnectFailed {
                        detail: "the joiner's data channel closed before opening".to_owned(),
                    })
                }
                Some(OffererEvent::Message(_)) => {}
            },
            changed = joiner_state.wait_for(|s| matches!(s, LinkState::Failed | LinkState::Closed)) => {
                let _ = changed;
                return Err(CheckError::ConnectFailed {
                    detail: "the joiner's connection failed (ICE found no working address pair, or DTLS failed)".to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Host sends `midieditor-ping` (framed), the joiner answers
/// `midieditor-pong`; returns the round-trip time.
async fn ping_pong(answered: &mut Answered, offerer: &mut Offerer) -> Result<Duration, CheckError> {
    let ping = Bytes::from(framing::encode(framing::PING));
    let pong = Bytes::from(framing::encode(framing::PONG));
    let sent = Instant::now();
    answered
        .link
        .send(CHANNEL_LABEL, ping.clone())
        .await
        .map_err(|e| CheckError::ConnectFailed {
            detail: format!("sending the ping: {e}"),
        })?;
    loop {
        tokio::select! {
            event = offerer.next_event() => match event {
                Some(OffererEvent::Message(data)) if data == ping => {
                    offerer.send(pong.clone()).await.map_err(|e| CheckError::ConnectFailed {
                        detail: format!("sending the pong: {e}"),
                    })?;
                }
                Some(OffererEvent::Closed) | None => {
                    return Err(CheckError::ConnectFailed { detail: "the joiner's channel closed".to_owned() })
                }
                Some(_) => {}
            },
            event = answered.events.recv() => match event {
                Some(LinkEvent::Message { data, .. }) if data == pong => return Ok(sent.elapsed()),
                Some(LinkEvent::State(LinkState::Failed | LinkState::Closed)) | None => {
                    return Err(CheckError::ConnectFailed { detail: "the host side's connection closed".to_owned() })
                }
                Some(_) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        assert_eq!(
            parse_url(" http://127.0.0.1:8787/ ").unwrap().as_str(),
            "http://127.0.0.1:8787"
        );
        assert_eq!(
            parse_url("https://h.example/rdv/").unwrap().as_str(),
            "https://h.example/rdv"
        );
        for bad in [
            "127.0.0.1:8787",
            "ftp://h",
            "http://",
            "",
            "http://h/?x=1",
            "not a url",
        ] {
            assert!(
                matches!(parse_url(bad), Err(CheckError::BadUrl { .. })),
                "{bad:?}"
            );
        }
    }
}
