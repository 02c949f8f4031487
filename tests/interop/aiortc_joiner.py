#!/usr/bin/env python3
"""An independent WebRTC joiner (aiortc) that joins a jam the way MidiEditor AI does.

It is a peer we did not write the WebRTC stack of, for the host's interop tests:

1. ``GET /health`` (3 s budget, only 200 passes), ``GET /code/<c>`` (verify; gives the
   sessionId and the host's displayName).
2. One PeerConnection with ``RTCConfiguration(iceServers=[])`` (never a public STUN
   server), one in-band data channel per ``--channels`` label (reliable, ordered;
   ``midieditor`` first), the offer, ICE gathering to completion (non-trickle).
3. A fresh 16-character joinerId from ``[A-Za-z0-9-]``; ``POST /code/<c>/joiner-offer``
   and, in parallel, ``GET /code/<c>/host-answer/<joinerId>`` every 750 ms (404 = keep
   polling, 200 = the answer, anything else ends the join), the timer firing whether or
   not the previous poll has finished.
4. The answer is applied; when ``midieditor`` opens, a framed ``hello`` is sent.

Frames are ``[u32 big-endian length][compact UTF-8 JSON]``, one per binary message.
Everything is reported as JSON lines on stdout (see README.md); aiortc's own logging
goes to stderr. Exit codes: 0 ok, 1 internal error, 2 usage, 3 rendezvous, 4 WebRTC
connection, 5 an expectation not met, 6 closed by the remote before ``--stay`` ended.

Run it inside a network namespace whose ``lo`` also has 127.0.0.2 (aioice never offers
127.0.0.1 as a candidate); README.md shows the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import string
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_RENDEZVOUS = 3
EXIT_CONNECT = 4
EXIT_EXPECT = 5
EXIT_CLOSED = 6

JOINER_ID_ALPHABET = string.ascii_letters + string.digits + "-"
PING = b"midieditor-ping"
PONG = b"midieditor-pong"
# MidiEditor (libdatachannel) advertises 16 MiB in its offer; aiortc itself says 256 KiB.
MIDIEDITOR_MAX_MESSAGE_SIZE = 16 * 1024 * 1024


class JoinError(Exception):
    """Ends the join with an error event and an exit code."""

    def __init__(self, code: int, stage: str, message: str, **fields):
        super().__init__(message)
        self.code = code
        self.stage = stage
        self.fields = fields


class Reporter:
    """Writes one JSON object per line on stdout; ``ms`` counts from the start."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def ms(self) -> float:
        return round((time.monotonic() - self.t0) * 1000.0, 1)

    def emit(self, event: str, **fields) -> None:
        record = {"event": event, "ms": self.ms()}
        record.update(fields)
        sys.stdout.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------------------------------
# Rendezvous HTTP (urllib in a worker thread; proxies from the environment are ignored)

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(method: str, url: str, body: dict | None, timeout: float) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
    # MidiEditor sends Content-Type: application/json on every request, GETs included.
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def http(method: str, url: str, body: dict | None = None, timeout: float = 5.0):
    """Returns (status, bytes); raises OSError-derived errors for transport failures."""
    return await asyncio.to_thread(_http, method, url, body, timeout)


def _short(raw: bytes, limit: int = 300) -> str:
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------------------------------
# Framing


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def frame_json(obj: dict) -> bytes:
    return frame(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def garbage_messages() -> list[tuple[str, bytes | str]]:
    """Malformed messages a robust host must survive (it may drop or close, not crash)."""
    return [
        ("text-message", '{"type":"heartbeat"}'),  # a text (string) message, no prefix
        ("unprefixed-json", b'{"type":"heartbeat"}'),  # reads as a huge length
        ("short", b"\x00\x01"),  # fewer than 4 bytes
        ("length-too-big", struct.pack(">I", 100) + b"0123456789"),
        ("length-too-small", struct.pack(">I", 2) + b'{"type":"heartbeat"}'),
        ("max-length", b"\xff\xff\xff\xff" + b"{}"),
        ("not-utf8", frame(b"\xff\xfe\xfd not json")),
        ("not-json", frame(b"this is not json")),
        ("json-array", frame(b"[1,2,3]")),
        ("json-string", frame(b'"hello"')),
        ("no-type", frame(b'{"hello":1}')),
        ("type-not-string", frame(b'{"type":42}')),
        ("unknown-type", frame_json({"type": "zzUnknownType", "x": [1, 2]})),
        ("empty-payload", frame(b"")),
        ("empty-message", b""),
    ]


def big_frame(size: int, type_name: str) -> bytes:
    """One frame whose JSON payload is exactly ``size`` bytes (the message is size + 4)."""
    head = json.dumps({"type": type_name, "pad": ""}, separators=(",", ":"))
    pad = size - len(head)
    if pad < 0:
        raise ValueError(f"--big must be at least {len(head)} bytes")
    payload = head[:-2] + "x" * pad + head[-2:]
    assert len(payload) == size
    return frame(payload.encode())


# ---------------------------------------------------------------------------------------
# The join


class Joiner:
    def __init__(self, args: argparse.Namespace, rep: Reporter) -> None:
        self.args = args
        self.rep = rep
        self.base = args.url.rstrip("/")
        self.pc = None
        self.channels: dict[str, object] = {}
        self.opened: dict[str, asyncio.Event] = {}
        self.finish: asyncio.Future | None = None  # result: exit code
        self.first_frame: asyncio.Future | None = None
        self.frames = 0
        self.first_type = None
        self.seen_types: set = set()
        self.session_id = ""
        self.closing = False
        self.ping_sent_at: float | None = None
        self.pong_seen = False
        self.t_offer_posted: float | None = None
        self.t_answer: float | None = None
        self.t_open: float | None = None
        self.tasks: list[asyncio.Task] = []

    # -- helpers --------------------------------------------------------------------

    def _end(self, code: int) -> None:
        if self.finish is not None and not self.finish.done():
            self.finish.set_result(code)

    def _fail(self, err: JoinError) -> None:
        if self.finish is not None and not self.finish.done():
            self.finish.set_exception(err)

    def send(self, label: str, data: bytes | str, what: str, **fields) -> bool:
        ch = self.channels.get(label)
        if ch is None or ch.readyState != "open":
            self.rep.emit("error", stage="send", message=f"channel {label} not open", what=what)
            return False
        try:
            ch.send(data)
        except Exception as exc:  # aiortc refuses messages over the remote max size
            self.rep.emit("error", stage="send", message=str(exc), what=what, **fields)
            return False
        self.rep.emit("sent", channel=label, what=what, **fields)
        return True

    # -- rendezvous -----------------------------------------------------------------

    async def health(self) -> None:
        try:
            status, body = await http("GET", self.base + "/health", timeout=3.0)
        except OSError as exc:
            raise JoinError(EXIT_RENDEZVOUS, "health", f"GET /health failed: {exc}")
        if status != 200:
            raise JoinError(EXIT_RENDEZVOUS, "health", "GET /health not 200", status=status)
        self.rep.emit("health", status=status)

    async def verify(self) -> dict:
        try:
            status, body = await http("GET", f"{self.base}/code/{self.args.code}")
        except OSError as exc:
            raise JoinError(EXIT_RENDEZVOUS, "verify", f"GET /code failed: {exc}")
        if status != 200:
            raise JoinError(
                EXIT_RENDEZVOUS, "verify", "code not found", status=status, body=_short(body)
            )
        try:
            info = json.loads(body)
        except ValueError:
            raise JoinError(EXIT_RENDEZVOUS, "verify", "verify body is not JSON", body=_short(body))
        self.rep.emit(
            "verified", sessionId=info.get("sessionId"), displayName=info.get("displayName")
        )
        return info

    async def post_offer(self, joiner_id: str, sdp: str) -> None:
        url = f"{self.base}/code/{self.args.code}/joiner-offer"
        try:
            status, body = await http("POST", url, {"joinerId": joiner_id, "sdp": sdp})
        except OSError as exc:
            raise JoinError(EXIT_RENDEZVOUS, "offer", f"POST joiner-offer failed: {exc}")
        if status != 200:
            raise JoinError(
                EXIT_RENDEZVOUS, "offer", "joiner-offer refused", status=status, body=_short(body)
            )
        self.t_offer_posted = time.monotonic()
        self.rep.emit("offer-posted", joinerId=joiner_id, status=status)

    async def poll_answer(self, joiner_id: str, answer: asyncio.Future) -> None:
        """Fires a poll every --poll-ms without waiting for the previous one (MidiEditor's
        QTimer does the same), the first one at once, up to --max-polls."""
        url = f"{self.base}/code/{self.args.code}/host-answer/{joiner_id}"
        counts = {"sent": 0, "404": 0}

        async def once(n: int) -> None:
            try:
                status, body = await http("GET", url)
            except OSError as exc:
                if not answer.done():
                    answer.set_exception(
                        JoinError(EXIT_RENDEZVOUS, "answer", f"answer poll failed: {exc}", poll=n)
                    )
                return
            if self.args.verbose:
                self.rep.emit("poll", n=n, status=status)
            if answer.done():
                return
            if status == 404:
                counts["404"] += 1
                return
            if status != 200:
                answer.set_exception(
                    JoinError(
                        EXIT_RENDEZVOUS,
                        "answer",
                        "answer poll got a status other than 200/404",
                        status=status,
                        body=_short(body),
                        poll=n,
                    )
                )
                return
            try:
                sdp = json.loads(body)["sdp"]
                if not isinstance(sdp, str) or not sdp:
                    raise ValueError("empty sdp")
            except (ValueError, KeyError, TypeError) as exc:
                answer.set_exception(
                    JoinError(EXIT_RENDEZVOUS, "answer", f"bad answer body: {exc}", body=_short(body))
                )
                return
            answer.set_result((sdp, n, counts["404"]))

        inflight: set[asyncio.Task] = set()
        try:
            for n in range(1, self.args.max_polls + 1):
                if answer.done():
                    break
                counts["sent"] = n
                t = asyncio.create_task(once(n))
                inflight.add(t)
                t.add_done_callback(inflight.discard)
                await asyncio.sleep(self.args.poll_ms / 1000.0)
            if not answer.done():
                await asyncio.sleep(5.0)  # let the last polls land
            if not answer.done():
                answer.set_exception(
                    JoinError(EXIT_RENDEZVOUS, "answer", "no answer after the last poll", polls=n)
                )
        finally:
            for t in list(inflight):
                t.cancel()

    # -- WebRTC -------------------------------------------------------------------

    def _on_message(self, label: str, data) -> None:
        if label != "midieditor":
            if isinstance(data, str):
                self.rep.emit("message", channel=label, text=data[:512], len=len(data))
            else:
                self.rep.emit("message", channel=label, len=len(data), hex=bytes(data[:256]).hex())
            return
        if isinstance(data, str):
            self.rep.emit("frame-error", channel=label, reason="text message", text=data[:512])
            return
        data = bytes(data)
        if len(data) < 4:
            self.rep.emit("frame-error", channel=label, reason="shorter than 4 bytes", hex=data.hex())
            return
        (length,) = struct.unpack(">I", data[:4])
        payload = data[4:]
        if length != len(payload):
            self.rep.emit(
                "frame-error",
                channel=label,
                reason="length prefix does not match the message",
                declared=length,
                actual=len(payload),
            )
            return
        if payload == PONG:
            self.frames += 1
            rtt = None
            if self.ping_sent_at is not None:
                rtt = round((time.monotonic() - self.ping_sent_at) * 1000.0, 2)
            self.pong_seen = True
            self.rep.emit("frame", channel=label, type=None, raw=PONG.decode(), len=length)
            self.rep.emit("pong", rtt_ms=rtt)
            self._note_first(None)
            self._check_done()
            return
        if payload == PING:
            self.frames += 1
            self.rep.emit("frame", channel=label, type=None, raw=PING.decode(), len=length)
            self._note_first(None)
            self.send(label, frame(PONG), "pong")
            return
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.rep.emit("frame-error", channel=label, reason="payload is not JSON", len=length,
                          text=payload[:256].decode("utf-8", "replace"))
            return
        self.frames += 1
        ftype = body.get("type") if isinstance(body, dict) else None
        record = {"channel": label, "type": ftype, "len": length}
        if length <= self.args.max_body_print:
            record["body"] = body
        else:
            record["body_truncated"] = True
            if isinstance(body, dict):
                record["keys"] = sorted(body.keys())
        self.rep.emit("frame", **record)
        self.seen_types.add(ftype)
        self._note_first(ftype)
        self._check_done()

    def _note_first(self, ftype) -> None:
        if self.first_frame is not None and not self.first_frame.done():
            self.first_type = ftype
            self.first_frame.set_result(ftype)
            want = self.args.expect_first
            if want and ftype != want:
                self._fail(
                    JoinError(EXIT_EXPECT, "expect", "unexpected first frame", want=want, got=ftype)
                )

    def _check_done(self) -> None:
        """With --exit-on, leave as soon as everything asked for was seen."""
        if not self.args.exit_on:
            return
        if self.args.ping and not self.pong_seen:
            return
        if self.args.exit_on in self.seen_types:
            self._end(EXIT_OK)

    def _open_channels(self) -> None:
        for label in self.args.channels:
            # Reliable and ordered: no maxRetransmits, no maxPacketLifeTime.
            ch = self.pc.createDataChannel(label, ordered=True)
            self.channels[label] = ch
            ev = asyncio.Event()
            self.opened[label] = ev

            def bind(label=label, ch=ch, ev=ev):
                @ch.on("open")
                def _open():
                    ev.set()

                @ch.on("message")
                def _message(data):
                    self._on_message(label, data)

                @ch.on("close")
                def _close():
                    if not self.closing:
                        self.rep.emit("closed", channel=label, by="remote")
                        self._end(EXIT_CLOSED)

            bind()

    async def after_open(self) -> None:
        a = self.args
        if a.send_garbage and a.garbage_first:
            self.send_garbage()
        if not a.no_hello:
            hello = {
                "type": "hello",
                "sessionId": self.session_id,
                "displayName": a.name,
                "machineId": a.machine_id,
                "appVersion": a.app_version,
                "currentHead": a.current_head,
                "historyTailHashes": [],
            }
            self.send("midieditor", frame_json(hello), "hello", body=hello)
        if a.send_garbage and not a.garbage_first:
            # After the host's first frame (its welcome), so the handshake is not disturbed.
            try:
                await asyncio.wait_for(asyncio.shield(self.first_frame), timeout=5.0)
            except asyncio.TimeoutError:
                pass
            self.send_garbage()
        if a.ping:
            self.ping_sent_at = time.monotonic()
            self.send("midieditor", frame(PING), "ping")
        if a.big:
            try:
                data = big_frame(a.big, a.big_type)
            except ValueError as exc:
                raise JoinError(EXIT_INTERNAL, "big", str(exc))
            if not self.send("midieditor", data, "big", payload_len=a.big, message_len=len(data)):
                self._fail(JoinError(EXIT_EXPECT, "big", "the big frame could not be sent"))
        if a.midi_hex:
            if "midi" not in self.channels:
                raise JoinError(EXIT_INTERNAL, "midi", "--midi-hex needs --channels midieditor,midi")
            self.send("midi", bytes.fromhex(a.midi_hex), "midi", hex=a.midi_hex)
        if a.send_heartbeats:
            self.tasks.append(asyncio.create_task(self.heartbeats()))

    def send_garbage(self) -> None:
        for kind, data in garbage_messages():
            self.send("midieditor", data, "garbage", kind=kind)

    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.args.heartbeat_interval)
            self.send("midieditor", frame_json({"type": "heartbeat"}), "heartbeat")

    async def run(self) -> int:
        a = self.args
        loop = asyncio.get_running_loop()
        self.finish = loop.create_future()
        self.first_frame = loop.create_future()

        await self.health()
        info = await self.verify()
        self.session_id = a.session_id if a.session_id is not None else info.get("sessionId", "")

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @self.pc.on("connectionstatechange")
        async def _state():
            state = self.pc.connectionState
            self.rep.emit("state", state=state)
            if state == "failed":
                self._fail(JoinError(EXIT_CONNECT, "connect", "PeerConnection failed"))
            elif state == "closed" and not self.closing:
                self.rep.emit("closed", channel=None, by="remote")
                self._end(EXIT_CLOSED)

        self._open_channels()
        t_gather = time.monotonic()
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)  # aiortc gathers completely here
        sdp = self.pc.localDescription.sdp
        if a.max_message_size is not None:
            sdp = re.sub(r"a=max-message-size:\d+", f"a=max-message-size:{a.max_message_size}", sdp)
        candidates = [ln[2:] for ln in sdp.splitlines() if ln.startswith("a=candidate:")]
        self.rep.emit(
            "offer",
            gather_ms=round((time.monotonic() - t_gather) * 1000.0, 1),
            candidates=candidates,
            sdp_len=len(sdp),
        )
        if not candidates:
            raise JoinError(
                EXIT_CONNECT,
                "offer",
                "no ICE candidates (aioice skips 127.0.0.1: add 127.0.0.2/8 to lo)",
            )

        joiner_id = a.joiner_id or "".join(secrets.choice(JOINER_ID_ALPHABET) for _ in range(16))
        answer = loop.create_future()
        poller = asyncio.create_task(self.poll_answer(joiner_id, answer))
        self.tasks.append(poller)
        try:
            await self.post_offer(joiner_id, sdp)
        except JoinError:
            poller.cancel()
            raise
        if a.vanish_after_offer:
            poller.cancel()
            self.rep.emit("vanished", joinerId=joiner_id)
            return EXIT_OK

        try:
            answer_sdp, poll_n, n404 = await asyncio.wait_for(
                answer, timeout=a.max_polls * a.poll_ms / 1000.0 + 10.0
            )
        except asyncio.TimeoutError:
            raise JoinError(EXIT_RENDEZVOUS, "answer", "no answer in time")
        poller.cancel()
        self.t_answer = time.monotonic()
        self.rep.emit(
            "answer",
            poll=poll_n,
            polls_404=n404,
            since_offer_ms=round((self.t_answer - self.t_offer_posted) * 1000.0, 1),
            candidates=[ln[2:] for ln in answer_sdp.splitlines() if ln.startswith("a=candidate:")],
            max_message_size=_sdp_max_message_size(answer_sdp),
        )
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

        # Wait for every channel to open (or the connection to fail).
        waiters = [asyncio.ensure_future(ev.wait()) for ev in self.opened.values()]
        all_open = asyncio.ensure_future(asyncio.gather(*waiters))
        done, _ = await asyncio.wait(
            {all_open, self.finish}, timeout=a.connect_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if self.finish in done:
            all_open.cancel()
            return self.finish.result()  # raises the JoinError if it failed
        if all_open not in done:
            all_open.cancel()
            missing = [label for label, ev in self.opened.items() if not ev.is_set()]
            raise JoinError(
                EXIT_CONNECT, "connect", "data channel did not open in time", missing=missing,
                state=self.pc.connectionState,
            )
        self.t_open = time.monotonic()
        self.rep.emit(
            "open",
            channels=list(self.channels),
            offer_to_open_ms=round((self.t_open - self.t_offer_posted) * 1000.0, 1),
            answer_to_open_ms=round((self.t_open - self.t_answer) * 1000.0, 1),
        )
        await self.after_open()

        done, _ = await asyncio.wait({self.finish}, timeout=a.stay)
        if self.finish in done:
            return self.finish.result()
        # --stay elapsed: check what was asked for.
        if a.expect_first and self.first_type is None and not self.first_frame.done():
            raise JoinError(EXIT_EXPECT, "expect", "no frame received", want=a.expect_first)
        if a.ping and not self.pong_seen:
            raise JoinError(EXIT_EXPECT, "expect", "no midieditor-pong received")
        if a.exit_on:
            raise JoinError(EXIT_EXPECT, "expect", "frame type never received", want=a.exit_on)
        return EXIT_OK

    async def close(self) -> None:
        self.closing = True
        for t in self.tasks:
            t.cancel()
        if self.pc is None:
            return
        # aiortc's close aborts the SCTP association and drops whatever is not yet
        # acknowledged, so let queued messages (a big frame) be delivered first.
        sctp = self.pc.sctp
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and (
            any(ch.bufferedAmount > 0 for ch in self.channels.values())
            or (sctp is not None and (getattr(sctp, "_outbound_queue", None)
                                      or getattr(sctp, "_sent_queue", None)))
        ):
            await asyncio.sleep(0.02)
        await self.pc.close()


def _sdp_max_message_size(sdp: str):
    m = re.search(r"a=max-message-size:(\d+)", sdp)
    return int(m.group(1)) if m else None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="aiortc joiner that joins a jam like MidiEditor AI (JSON-line events on stdout)."
    )
    p.add_argument("--url", required=True, help="rendezvous base URL, e.g. http://127.0.0.1:8787")
    p.add_argument("--code", required=True, help="the 4-character session code (used as given)")
    p.add_argument("--name", default="aiortc-joiner", help="displayName in hello")
    p.add_argument("--machine-id", default=None, help="machineId in hello (default: a fresh uuid4)")
    p.add_argument("--session-id", default=None, help="sessionId in hello (default: from GET /code)")
    p.add_argument("--app-version", default="2.0.1")
    p.add_argument("--current-head", default="")
    p.add_argument("--joiner-id", default=None, help="use this joinerId instead of a fresh one")
    p.add_argument("--channels", default="midieditor",
                   help="comma-separated data channel labels, e.g. midieditor,midi")
    p.add_argument("--stay", type=float, default=5.0,
                   help="seconds to stay connected after the channels open (default 5)")
    p.add_argument("--send-heartbeats", action="store_true",
                   help="send {type:heartbeat} every --heartbeat-interval seconds")
    p.add_argument("--heartbeat-interval", type=float, default=10.0)
    p.add_argument("--send-garbage", action="store_true",
                   help="send malformed messages after the host's first frame")
    p.add_argument("--garbage-first", action="store_true",
                   help="with --send-garbage: send them right at open, before hello")
    p.add_argument("--no-hello", action="store_true", help="do not send hello on open")
    p.add_argument("--vanish-after-offer", action="store_true",
                   help="post the offer, then exit 0 without connecting")
    p.add_argument("--ping", action="store_true",
                   help="send raw framed midieditor-ping and require midieditor-pong")
    p.add_argument("--big", type=int, default=0, metavar="N",
                   help="send one JSON frame whose payload is exactly N bytes")
    p.add_argument("--big-type", default="bigTest", help="type field of the --big frame")
    p.add_argument("--midi-hex", default=None, metavar="HEX",
                   help="send these raw bytes as one message on the midi channel after open")
    p.add_argument("--expect-first", default=None, metavar="TYPE",
                   help="fail (exit 5) unless the host's first frame has this type")
    p.add_argument("--exit-on", default=None, metavar="TYPE",
                   help="leave (exit 0) as soon as a frame of this type arrives (and the pong, "
                        "with --ping); fail if it has not by the end of --stay")
    p.add_argument("--max-message-size", type=int, default=MIDIEDITOR_MAX_MESSAGE_SIZE,
                   help="a=max-message-size written into the posted offer (MidiEditor: 16777216)")
    p.add_argument("--poll-ms", type=int, default=750)
    p.add_argument("--max-polls", type=int, default=360)
    p.add_argument("--connect-timeout", type=float, default=20.0,
                   help="seconds from the answer to the channels being open")
    p.add_argument("--max-body-print", type=int, default=65536,
                   help="frames with a larger payload are reported without their body")
    p.add_argument("--verbose", action="store_true", help="also report every answer poll")
    args = p.parse_args(argv)
    args.channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    if not args.channels or args.channels[0] != "midieditor":
        p.error("--channels must start with midieditor")
    if args.machine_id is None:
        args.machine_id = str(uuid.uuid4())
    return args


async def amain(args: argparse.Namespace, rep: Reporter) -> int:
    joiner = Joiner(args, rep)
    code = EXIT_INTERNAL
    try:
        code = await joiner.run()
    except JoinError as err:
        rep.emit("error", stage=err.stage, message=str(err), **err.fields)
        code = err.code
    except Exception as exc:  # pragma: no cover - reported, not hidden
        rep.emit("error", stage="internal", message=f"{type(exc).__name__}: {exc}")
        code = EXIT_INTERNAL
    finally:
        try:
            await joiner.close()
        except Exception as exc:  # pragma: no cover
            rep.emit("error", stage="close", message=str(exc))
    summary = {
        "code": code,
        "ok": code == EXIT_OK,
        "frames": joiner.frames,
        "first_type": joiner.first_type,
        "pong": joiner.pong_seen,
    }
    if joiner.t_open is not None and joiner.t_offer_posted is not None:
        summary["offer_to_open_ms"] = round((joiner.t_open - joiner.t_offer_posted) * 1000.0, 1)
    rep.emit("done", **summary)
    return code


def main() -> None:
    rep = Reporter()
    args = parse_args()
    rep.emit("start", joiner="aiortc", url=args.url, code=args.code, machineId=args.machine_id)
    sys.exit(asyncio.run(amain(args, rep)))


if __name__ == "__main__":
    main()
