#!/usr/bin/env python3
"""An aiortc joiner that plays and hears live MIDI on the ``midi`` data channel.

It is ``aiortc_joiner.py`` (same options, same JSON-line events, same exit codes) plus
the ``midi`` channel spoken with ``midi_frames.py`` (docs/midi-frames.md):

- ``--channels`` defaults to ``midieditor,midi``;
- every frame received on ``midi`` is reported as
  ``{"event":"midi","origin":N,"flags":F,"release":bool,"time_us":T,"latency_us":L,
  "messages":["903c64",...]}`` (``latency_us`` = our wall clock minus ``time_us``), or
  ``{"event":"midi-error","reason":...}`` for a frame the format refuses;
- ``--midi-send HEX`` (repeatable) sends one frame per option once the channels are
  open; ``--midi-stdin`` also sends one frame per stdin line: hex of one or more whole
  canonical MIDI messages, spaces allowed, stamped with the wall clock in microseconds.
  ``sleep MS`` on a line waits. Each frame sent is reported as ``midi-sent``.
- it promises keep-alives (docs/midi-frames.md, "Keep-alive and stalls"): every frame it
  sends has the ``KEEPALIVE`` flag, and while anything it sent still holds a note or a
  pedal it sends at least one frame every 250 ms (~150-200 ms apart), an empty one (not
  reported) when it has nothing to play. So a host that knows the flag releases its notes about
  1 s after it is killed. ``--no-keepalive`` makes it an older joiner: no flag, no
  keep-alives.

Run it like aiortc_joiner.py, inside a network namespace (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiortc_joiner  # noqa: E402
import midi_frames  # noqa: E402

MIDI = "midi"
# How often the keep-alive timer looks, and the quiet after which it sends: a check
# that runs up to one period late still keeps the 250 ms promise.
KEEPALIVE_CHECK_S = 0.05
KEEPALIVE_AFTER_S = midi_frames.KEEPALIVE_EVERY_S - 2 * KEEPALIVE_CHECK_S


def wall_us() -> int:
    return time.time_ns() // 1000


class Held:
    """What the frames we sent still hold on the receiver, tracked as the document's
    "No stuck notes" says: notes from a Note On (velocity > 0) until their Note Off or
    velocity-0 Note On, or CC 123 / CC 120 on their channel, or Reset; pedals from
    CC 64 >= 64 until CC 64 < 64, CC 121 on their channel, or Reset."""

    def __init__(self) -> None:
        self.notes: set[tuple[int, int]] = set()
        self.pedals: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.notes or self.pedals)

    def apply(self, m: bytes) -> None:
        status = m[0]
        if status == 0xFF:
            self.notes.clear()
            self.pedals.clear()
            return
        kind, ch = status & 0xF0, status & 0x0F
        if kind == 0x90 and m[2] > 0:
            self.notes.add((ch, m[1]))
        elif kind in (0x80, 0x90):
            self.notes.discard((ch, m[1]))
        elif kind == 0xB0:
            cc, value = m[1], m[2]
            if cc == 64 and value >= 64:
                self.pedals.add(ch)
            elif cc in (64, 121):
                self.pedals.discard(ch)
            elif cc in (120, 123):
                self.notes = {n for n in self.notes if n[0] != ch}


class MidiJoiner(aiortc_joiner.Joiner):
    def __init__(self, args: argparse.Namespace, rep: aiortc_joiner.Reporter) -> None:
        super().__init__(args, rep)
        self.held = Held()
        self.last_midi_sent = 0.0  # time.monotonic() of our last frame on midi

    def _flags(self) -> int:
        return 0 if self.args.no_keepalive else midi_frames.FLAG_KEEPALIVE

    def _on_message(self, label: str, data) -> None:
        if label != MIDI:
            super()._on_message(label, data)
            return
        now = wall_us()
        if isinstance(data, str):
            self.rep.emit("midi-error", reason="text message on midi")
            return
        try:
            f = midi_frames.decode(bytes(data))
        except midi_frames.FrameError as exc:
            self.rep.emit("midi-error", reason=str(exc), len=len(data))
            return
        self.rep.emit(
            "midi",
            origin=f.origin,
            flags=f.flags,
            release=f.release,
            time_us=f.time_us,
            latency_us=(now - f.time_us) if f.time_us else None,
            # Long SysEx: the head and the length are enough for a report.
            messages=[m.hex() if len(m) <= 64 else f"{m[:16].hex()}..len={len(m)}"
                      for m in f.messages],
            sysex_lengths=[len(m) for m in f.messages if m[0] == 0xF0],
        )

    def send_midi_hex(self, text: str) -> bool:
        try:
            messages = midi_frames.split_messages(bytes.fromhex(text))
            frame = midi_frames.encode(messages, 0, wall_us(), self._flags())
        except (ValueError, midi_frames.FrameError) as exc:
            self.rep.emit("error", stage="midi-send", message=str(exc), hex=text[:128])
            return False
        ch = self.channels.get(MIDI)
        if ch is None or ch.readyState != "open":
            self.rep.emit("error", stage="midi-send", message="midi channel not open")
            return False
        ch.send(frame)
        self.last_midi_sent = time.monotonic()
        for m in messages:
            self.held.apply(m)
        self.rep.emit("midi-sent", messages=len(messages), len=len(frame))
        return True

    async def keepalives(self) -> None:
        """Keeps the promise of the KEEPALIVE flag: an empty frame whenever the channel
        has been quiet for KEEPALIVE_AFTER_S while something we sent still sounds."""
        while True:
            await asyncio.sleep(KEEPALIVE_CHECK_S)
            if not self.held or time.monotonic() - self.last_midi_sent < KEEPALIVE_AFTER_S:
                continue
            ch = self.channels.get(MIDI)
            if ch is None or ch.readyState != "open":
                continue
            ch.send(midi_frames.encode([], 0, wall_us(), midi_frames.FLAG_KEEPALIVE))
            self.last_midi_sent = time.monotonic()

    async def after_open(self) -> None:
        await super().after_open()
        if not self.args.no_keepalive:
            self.tasks.append(asyncio.create_task(self.keepalives()))
        for text in self.args.midi_send:
            self.send_midi_hex(text)
        if self.args.midi_stdin:
            self.tasks.append(asyncio.create_task(self.read_stdin()))

    async def read_stdin(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                self.rep.emit("stdin-closed")
                return
            text = line.decode("ascii", "replace").strip()
            if not text:
                continue
            if text.startswith("sleep "):
                await asyncio.sleep(float(text.split()[1]) / 1000.0)
                continue
            self.send_midi_hex(text.replace(" ", ""))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--midi-send", action="append", default=[], metavar="HEX")
    p.add_argument("--midi-stdin", action="store_true")
    p.add_argument("--no-keepalive", action="store_true")
    mine, rest = p.parse_known_args(argv)
    if not any(a == "--channels" or a.startswith("--channels=") for a in rest):
        rest += ["--channels", "midieditor,midi"]
    args = aiortc_joiner.parse_args(rest)
    if MIDI not in args.channels:
        raise SystemExit("midi_joiner: --channels must include midi")
    args.midi_send = mine.midi_send
    args.midi_stdin = mine.midi_stdin
    args.no_keepalive = mine.no_keepalive
    return args


async def amain(args: argparse.Namespace, rep: aiortc_joiner.Reporter) -> int:
    # aiortc_joiner.amain with our Joiner class.
    aiortc_joiner.Joiner = MidiJoiner
    return await original_amain(args, rep)


original_amain = aiortc_joiner.amain


def main() -> None:
    rep = aiortc_joiner.Reporter()
    args = parse_args()
    rep.emit("start", joiner="aiortc-midi", url=args.url, code=args.code,
             machineId=args.machine_id)
    sys.exit(asyncio.run(amain(args, rep)))


if __name__ == "__main__":
    main()
