#!/usr/bin/env python3
"""A throwaway aiortc HOST, only to validate the interop joiners before our Rust host.

It documents the host side of the MidiEditor flow on a ``midi-rdv serve`` rendezvous:

1. ``POST /session {sessionId, displayName}`` gives the code (reported as
   ``{"event":"session","code":...}`` on stdout, the first line after ``start``).
2. ``GET /code/<c>/joiner-offers`` every second for the whole session; each new
   joinerId gets its own PeerConnection (``iceServers=[]``), answered non-trickle with
   ``POST /code/<c>/host-answer``.
3. On the joiner's ``hello`` frame the host's FIRST frame is
   ``{"type":"sessionWelcome","mode":"edit","presenterMachineId":...}``, then a
   ``{"type":"heartbeat"}`` at once and every ``--heartbeat-interval`` seconds.
   A raw framed ``midieditor-ping`` gets ``midieditor-pong``. Malformed messages are
   reported and ignored. Messages on other channels (``midi``) are echoed back.

Everything is reported as JSON lines on stdout. SIGINT/SIGTERM or ``--duration`` ends it.
Run it inside the same network namespace as the joiners (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid

PING = b"midieditor-ping"
PONG = b"midieditor-pong"

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def emit(event: str, **fields) -> None:
    record = {"event": event, "ms": round((time.monotonic() - T0) * 1000.0, 1)}
    record.update(fields)
    sys.stdout.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.flush()


T0 = time.monotonic()


def _http(method: str, url: str, body: dict | None, timeout: float = 5.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def http(method: str, url: str, body: dict | None = None):
    return await asyncio.to_thread(_http, method, url, body)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def frame_json(obj: dict) -> bytes:
    return frame(json.dumps(obj, separators=(",", ":")).encode())


class Peer:
    def __init__(self, host: "MiniHost", joiner_id: str) -> None:
        self.host = host
        self.joiner_id = joiner_id
        self.pc = None
        self.channel = None
        self.welcomed = False
        self.hb_task: asyncio.Task | None = None

    async def answer(self, offer_sdp: str) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @self.pc.on("datachannel")
        def _channel(ch):
            emit("channel", joinerId=self.joiner_id, label=ch.label)
            if ch.label == "midieditor":
                self.channel = ch

            @ch.on("message")
            def _message(data):
                self.on_message(ch, data)

            @ch.on("close")
            def _close():
                emit("channel-closed", joinerId=self.joiner_id, label=ch.label)

        @self.pc.on("connectionstatechange")
        async def _state():
            st = self.pc.connectionState
            emit("state", joinerId=self.joiner_id, state=st)
            if st in ("failed", "closed"):
                await self.close()

        t = time.monotonic()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        sdp = self.pc.localDescription.sdp
        if self.host.args.max_message_size is not None:
            sdp = re.sub(
                r"a=max-message-size:\d+", f"a=max-message-size:{self.host.args.max_message_size}", sdp
            )
        status, body = await http(
            "POST", self.host.url("/host-answer"), {"joinerId": self.joiner_id, "sdp": sdp}
        )
        emit(
            "answered",
            joinerId=self.joiner_id,
            status=status,
            answer_ms=round((time.monotonic() - t) * 1000.0, 1),
            candidates=[ln[2:] for ln in sdp.splitlines() if ln.startswith("a=candidate:")],
        )
        if status != 200:
            emit("error", joinerId=self.joiner_id, message="host-answer refused",
                 body=body.decode("utf-8", "replace"))
            await self.close()

    def send(self, data: bytes, what: str) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            try:
                self.channel.send(data)
            except ValueError as exc:  # larger than the joiner's max-message-size
                emit("error", joinerId=self.joiner_id, what=what, message=str(exc))
                return
            emit("sent", joinerId=self.joiner_id, what=what)

    def on_message(self, ch, data) -> None:
        if ch.label != "midieditor":
            emit("message", joinerId=self.joiner_id, label=ch.label, len=len(data))
            ch.send(data)  # echo: lets a joiner measure a round trip on its own channel
            return
        if isinstance(data, str) or len(data) < 4:
            emit("frame-error", joinerId=self.joiner_id, reason="text or short message")
            return
        (n,) = struct.unpack(">I", data[:4])
        payload = bytes(data[4:])
        if n != len(payload):
            emit("frame-error", joinerId=self.joiner_id, reason="length mismatch",
                 declared=n, actual=len(payload))
            return
        if payload == PING:
            emit("frame", joinerId=self.joiner_id, raw="midieditor-ping")
            self.send(frame(PONG), "pong")
            return
        try:
            body = json.loads(payload)
            ftype = body.get("type") if isinstance(body, dict) else None
        except ValueError:
            emit("frame-error", joinerId=self.joiner_id, reason="not JSON", len=n)
            return
        emit("frame", joinerId=self.joiner_id, type=ftype, len=n,
             body=body if n <= 4096 else None)
        if ftype == "hello" and not self.welcomed:
            self.welcomed = True
            welcome = {
                "type": "sessionWelcome",
                "mode": self.host.args.mode,
                "presenterMachineId": self.host.args.machine_id,
            }
            self.send(frame_json(welcome), "sessionWelcome")
            if self.host.args.send_big:
                # One large frame after the welcome (like a filetransfer), to check that a
                # joiner receives what its offer's max-message-size allows.
                head = '{"type":"bigTest","pad":""}'
                pad = max(0, self.host.args.send_big - len(head))
                self.send(frame((head[:-2] + "x" * pad + head[-2:]).encode()), "big")
            self.hb_task = asyncio.ensure_future(self.heartbeats())

    async def heartbeats(self) -> None:
        while True:
            self.send(frame_json({"type": "heartbeat"}), "heartbeat")
            await asyncio.sleep(self.host.args.heartbeat_interval)

    async def close(self) -> None:
        if self.hb_task is not None:
            self.hb_task.cancel()
            self.hb_task = None
        if self.pc is not None and self.pc.connectionState != "closed":
            await self.pc.close()


class MiniHost:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = args.url.rstrip("/")
        self.code = ""
        self.peers: dict[str, Peer] = {}

    def url(self, suffix: str) -> str:
        return f"{self.base}/code/{self.code}{suffix}"

    async def start(self) -> None:
        status, _ = await http("GET", self.base + "/health")
        if status != 200:
            raise SystemExit(f"health: {status}")
        status, body = await http(
            "POST", self.base + "/session",
            {"sessionId": self.args.session_id, "displayName": self.args.name},
        )
        if status != 200:
            raise SystemExit(f"POST /session: {status} {body!r}")
        self.code = json.loads(body)["code"]
        emit("session", code=self.code, url=self.base, machineId=self.args.machine_id)

    async def poll_forever(self) -> None:
        while True:
            try:
                status, body = await http("GET", self.url("/joiner-offers"))
            except OSError as exc:
                emit("error", message=f"poll failed: {exc}")
                status, body = 0, b""
            if status == 404:
                emit("error", message="session gone (404 on joiner-offers)")
                return
            if status == 200:
                for offer in json.loads(body).get("offers", []):
                    jid = offer.get("joinerId")
                    if jid and jid not in self.peers:
                        peer = Peer(self, jid)
                        self.peers[jid] = peer
                        emit("offer", joinerId=jid)
                        asyncio.ensure_future(peer.answer(offer["sdp"]))
            await asyncio.sleep(self.args.poll_ms / 1000.0)

    async def close(self) -> None:
        for peer in self.peers.values():
            await peer.close()


async def amain(args: argparse.Namespace) -> int:
    host = MiniHost(args)
    await host.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    poller = asyncio.ensure_future(host.poll_forever())
    waits = {poller, asyncio.ensure_future(stop.wait())}
    await asyncio.wait(waits, timeout=args.duration or None, return_when=asyncio.FIRST_COMPLETED)
    for w in waits:
        w.cancel()
    await host.close()
    emit("stopped", peers=len(host.peers))
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description="Throwaway aiortc jam host (JSON-line events).")
    p.add_argument("--url", required=True, help="rendezvous base URL")
    p.add_argument("--session-id", default="")
    p.add_argument("--name", default="mini-host")
    p.add_argument("--machine-id", default=str(uuid.uuid4()))
    p.add_argument("--mode", default="edit", choices=["edit", "show"])
    p.add_argument("--heartbeat-interval", type=float, default=10.0)
    p.add_argument("--poll-ms", type=int, default=1000)
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until signalled)")
    p.add_argument("--send-big", type=int, default=0, metavar="N",
                   help="after the welcome, send one JSON frame with a payload of N bytes")
    p.add_argument("--max-message-size", type=int, default=None,
                   help="rewrite a=max-message-size in the answer (aiortc says 262144)")
    args = p.parse_args()
    emit("start", host="aiortc-mini-host")
    sys.exit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
