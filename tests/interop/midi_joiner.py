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


def wall_us() -> int:
    return time.time_ns() // 1000


class MidiJoiner(aiortc_joiner.Joiner):
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
            frame = midi_frames.encode(messages, 0, wall_us())
        except (ValueError, midi_frames.FrameError) as exc:
            self.rep.emit("error", stage="midi-send", message=str(exc), hex=text[:128])
            return False
        ch = self.channels.get(MIDI)
        if ch is None or ch.readyState != "open":
            self.rep.emit("error", stage="midi-send", message="midi channel not open")
            return False
        ch.send(frame)
        self.rep.emit("midi-sent", messages=len(messages), len=len(frame))
        return True

    async def after_open(self) -> None:
        await super().after_open()
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
    mine, rest = p.parse_known_args(argv)
    if not any(a == "--channels" or a.startswith("--channels=") for a in rest):
        rest += ["--channels", "midieditor,midi"]
    args = aiortc_joiner.parse_args(rest)
    if MIDI not in args.channels:
        raise SystemExit("midi_joiner: --channels must include midi")
    args.midi_send = mine.midi_send
    args.midi_stdin = mine.midi_stdin
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
