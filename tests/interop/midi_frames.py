#!/usr/bin/env python3
"""The ``midi`` data channel's frame format, version 1, written from docs/midi-frames.md
alone (not from the Rust code), so the interop tests check the document as well as the
host.

``encode(messages, origin=0, time_us=0, flags=0) -> bytes`` and
``decode(frame) -> Frame`` (raises ``FrameError``). ``messages`` are ``bytes`` objects,
each one canonical MIDI 1.0 message. Running ``python3 midi_frames.py`` checks the
document's examples and a few error cases.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

VERSION = 1
MAX_FRAME = 262_144
SYSEX_MAX = 65_536
FLAG_RELEASE = 0x01
# The sender sends a frame at least every KEEPALIVE_EVERY_S while anything it sent on the
# channel holds a note or pedal (an empty frame if need be), and sets this on every frame.
FLAG_KEEPALIVE = 0x02
KEEPALIVE_EVERY_S = 0.250
# Silence after which a receiver may release a sender that promised keep-alives.
STALL_S = 1.0

# Data bytes after each defined status byte (SysEx F0 is handled apart).
_REALTIME = {0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF}


def _data_len(status: int) -> int | None:
    hi = status & 0xF0
    if hi in (0x80, 0x90, 0xA0, 0xB0, 0xE0) or status == 0xF2:
        return 2
    if hi in (0xC0, 0xD0) or status in (0xF1, 0xF3):
        return 1
    if status == 0xF6 or status in _REALTIME:
        return 0
    return None  # F4, F5, F7, F9, FD: errors


class FrameError(ValueError):
    pass


@dataclass
class Frame:
    flags: int
    origin: int
    time_us: int
    messages: list[bytes] = field(default_factory=list)

    @property
    def release(self) -> bool:
        return bool(self.flags & FLAG_RELEASE)

    @property
    def keepalive(self) -> bool:
        return bool(self.flags & FLAG_KEEPALIVE)


def write_varint(v: int) -> bytes:
    if v < 0 or v >= 1 << 64:
        raise ValueError("origin must fit in 64 bits")
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v == 0:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """Returns (value, index after it)."""
    v = 0
    for i in range(10):
        if at + i >= len(data):
            raise FrameError("header cut short (origin)")
        b = data[at + i]
        group = b & 0x7F
        if i == 9 and group > 1:
            raise FrameError("origin over 64 bits")
        v |= group << (7 * i)
        if b & 0x80 == 0:
            return v, at + i + 1
    raise FrameError("origin over 10 bytes")


def split_messages(body: bytes) -> list[bytes]:
    """Splits canonical MIDI messages; raises FrameError on anything else."""
    out = []
    at = 0
    while at < len(body):
        status = body[at]
        if status < 0x80:
            raise FrameError(f"data byte {status:#04x} where a status byte belongs (offset {at})")
        if status == 0xF0:
            end = at + 1
            while end < len(body) and body[end] < 0x80:
                end += 1
            if end >= len(body):
                raise FrameError("SysEx without F7")
            if body[end] != 0xF7:
                raise FrameError("status byte inside a SysEx")
            msg = body[at:end + 1]
            if len(msg) > SYSEX_MAX:
                raise FrameError("SysEx over 65536 bytes")
            out.append(msg)
            at = end + 1
            continue
        n = _data_len(status)
        if n is None:
            raise FrameError(f"undefined status {status:#04x}")
        msg = body[at:at + 1 + n]
        if len(msg) != 1 + n:
            raise FrameError("message cut short")
        if any(b >= 0x80 for b in msg[1:]):
            raise FrameError("data byte >= 0x80")
        out.append(msg)
        at += 1 + n
    return out


def decode(frame: bytes) -> Frame:
    frame = bytes(frame)
    if len(frame) > MAX_FRAME:
        raise FrameError("frame over 262144 bytes")
    if not frame:
        raise FrameError("empty frame")
    if frame[0] != VERSION:
        raise FrameError(f"unknown version {frame[0]}")
    if len(frame) < 2:
        raise FrameError("header cut short (flags)")
    flags = frame[1]
    origin, at = read_varint(frame, 2)
    if len(frame) < at + 8:
        raise FrameError("header cut short (time)")
    (time_us,) = struct.unpack(">Q", frame[at:at + 8])
    return Frame(flags, origin, time_us, split_messages(frame[at + 8:]))


def encode(messages: list[bytes], origin: int = 0, time_us: int = 0, flags: int = 0) -> bytes:
    body = b"".join(bytes(m) for m in messages)
    split_messages(body)  # refuse to send what a receiver would refuse
    frame = bytes([VERSION, flags & 0xFF]) + write_varint(origin) + struct.pack(">Q", time_us) + body
    if len(frame) > MAX_FRAME:
        raise FrameError("frame over 262144 bytes: split the messages")
    return frame


def _selfcheck() -> None:
    h = bytes.fromhex
    t = 1_700_000_000_123_456
    note_on = h("903C64")
    assert encode([note_on], 0, t) == h("01 00 00 00 06 0A 24 18 20 22 40 90 3C 64".replace(" ", ""))
    chord = [note_on, h("90405A"), h("B0407F")]
    f = encode(chord, 300, t)
    assert f == h("0100AC0200060A241820224090 3C64 90405A B0407F".replace(" ", ""))
    r = decode(h("01 01 05 00 06 0A 24 18 20 22 40 80 3C 40 F0 7E 7F 09 01 F7".replace(" ", "")))
    assert (r.flags, r.origin, r.time_us) == (1, 5, t) and r.release
    assert r.messages == [h("803C40"), h("F07E7F0901F7")]
    assert decode(h("0100000000000000000000")).messages == []
    assert encode([note_on], 0, t, FLAG_KEEPALIVE) == h("01020000060A2418202240903C64")
    k = decode(h("01020000060A2418202240"))
    assert k.keepalive and not k.release and k.messages == [] and k.time_us == t
    for bad in ["", "02000000000000000000", "0100", "010080", "0100000000000000000000" + "3C",
                "0100000000000000000000" + "903C", "0100000000000000000000" + "F4",
                "0100000000000000000000" + "F07E", "0100000000000000000000" + "F07EF8F7",
                "0100" + "FF" * 10 + "00" * 8]:
        try:
            decode(h(bad))
        except FrameError:
            continue
        raise AssertionError(f"accepted {bad}")
    assert read_varint(h("8000"), 0) == (0, 2)
    assert write_varint(300) == h("AC02") and write_varint(128) == h("8001")
    print("midi_frames: document examples OK")


if __name__ == "__main__":
    _selfcheck()
