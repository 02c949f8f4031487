#!/usr/bin/env python3
"""An independent MidiEditor LAN Live client, written from the protocol text
alone (docs/spec/PEER-PROTOCOL.md, "MidiEditor's LAN mode"; docs/lan-live.md),
standard library only. Used by crates/midi-rdv/tests/lan_live.rs for the
discovery path and for the bad inputs a real MidiEditor never sends.

Every subcommand prints JSON lines on stdout and exits 0 when it ran to the
end (what happened is in the lines; the Rust test judges it).

  find CODE --iface-ip IP [--timeout S]
      Binds UDP 42424 (shared), joins 239.42.42.42 on the interface with IP,
      and prints the first "MIDIEDIT-PR-LAN|v1|sid|name|port|code" datagram
      whose code is CODE: {"found": {...}, "afterMs": N}, or {"found": null}.
  session HOST PORT [--name N] [--no-hello] [--chat TEXT] [--seconds S]
      Connects over TCP, sends hello (unless --no-hello), optionally a chat,
      and prints every frame received ({"frame": {...}, "atMs": N}) until
      the host closes ({"closed": true, "atMs": N}) or S seconds pass
      ({"closed": false}). Sends a heartbeat every 5 s.
  oversize HOST PORT     a header declaring 32 MiB + 1, then waits for close
  slowloris HOST PORT    a hello frame, one byte every 2 s; waits for close
  garbage HOST PORT      an unprefixed JSON text; waits for close
  stun HOST PORT          one STUN Binding request (RFC 5389); prints the
                          XOR-MAPPED-ADDRESS answered, or null after 2 s
  flood HOST PORT --count N [--hold S]
      Opens N connections at once without a word; prints how many the host
      closed within 1 s and how many it still held after S seconds.
"""

import argparse
import json
import socket
import struct
import sys
import time
import uuid

GROUP = "239.42.42.42"
PORT = 42424
MAGIC = "MIDIEDIT-PR-LAN"
CAP = 32 * 1024 * 1024


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def frame(obj):
    payload = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(payload)) + payload


def cmd_find(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", PORT))
    mreq = socket.inet_aton(GROUP) + socket.inet_aton(a.iface_ip)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    start = time.monotonic()
    deadline = start + a.timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data, (src, _) = s.recvfrom(2048)
        except socket.timeout:
            break
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        parts = text.split("|")
        if len(parts) != 6 or parts[0] != MAGIC or parts[1] != "v1":
            continue
        if parts[5] != a.code:
            continue
        out({"found": {"host": src, "port": int(parts[4]), "sessionId": parts[2],
                       "displayName": parts[3], "code": parts[5]},
             "afterMs": int((time.monotonic() - start) * 1000)})
        return
    out({"found": None})


def connect(a):
    c = socket.create_connection((a.host, a.port), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def read_frames(c, buf):
    """Splits complete frames off buf; returns (frames, rest)."""
    frames = []
    while len(buf) >= 4:
        (n,) = struct.unpack(">I", buf[:4])
        if n > CAP:
            raise ValueError("frame over 32 MiB")
        if len(buf) < 4 + n:
            break
        payload, buf = buf[4:4 + n], buf[4 + n:]
        try:
            frames.append(json.loads(payload))
        except ValueError:
            frames.append({"raw": payload.decode("latin-1")})
    return frames, buf


def wait_closed(c, seconds, start):
    """Reads (and discards) until EOF or `seconds`; reports which."""
    c.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = c.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            data = b""
        if not data:
            out({"closed": True, "atMs": int((time.monotonic() - start) * 1000)})
            return True
    out({"closed": False})
    return False


def cmd_session(a):
    start = time.monotonic()
    c = connect(a)
    me = str(uuid.uuid4())
    if not a.no_hello:
        c.sendall(frame({"type": "hello", "sessionId": "", "displayName": a.name,
                         "machineId": me, "appVersion": "2.0.1", "currentHead": "",
                         "historyTailHashes": []}))
    chat_sent = False
    buf = b""
    c.settimeout(0.1)
    deadline = start + a.seconds
    last_beat = time.monotonic()
    while time.monotonic() < deadline:
        if a.chat and not chat_sent and time.monotonic() - start >= a.chat_after:
            c.sendall(frame({"type": "chat", "sender": me, "displayName": a.name,
                             "text": a.chat, "timestamp": int(time.time() * 1000)}))
            chat_sent = True
        if time.monotonic() - last_beat >= 5:
            c.sendall(frame({"type": "heartbeat"}))
            last_beat = time.monotonic()
        try:
            data = c.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            data = b""
        if not data:
            out({"closed": True, "atMs": int((time.monotonic() - start) * 1000)})
            return
        frames, buf = read_frames(c, buf + data)
        for f in frames:
            out({"frame": f, "atMs": int((time.monotonic() - start) * 1000)})
    out({"closed": False})


def cmd_oversize(a):
    start = time.monotonic()
    c = connect(a)
    c.sendall(struct.pack(">I", CAP + 1) + b"{")
    wait_closed(c, a.seconds, start)


def cmd_garbage(a):
    start = time.monotonic()
    c = connect(a)
    c.sendall(b'{"type":"hello","displayName":"raw"}')
    wait_closed(c, a.seconds, start)


def cmd_slowloris(a):
    start = time.monotonic()
    c = connect(a)
    data = frame({"type": "hello", "displayName": "slow", "machineId": str(uuid.uuid4())})
    c.settimeout(0.2)
    for i in range(len(data)):
        try:
            c.sendall(data[i:i + 1])
        except OSError:
            out({"closed": True, "atMs": int((time.monotonic() - start) * 1000), "sent": i})
            return
        t = time.monotonic() + 2.0
        while time.monotonic() < t:
            try:
                got = c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                got = b""
            if not got:
                out({"closed": True, "atMs": int((time.monotonic() - start) * 1000),
                     "sent": i + 1})
                return
        if time.monotonic() - start > a.seconds:
            break
    out({"closed": False})


def cmd_flood(a):
    conns = []
    refused = 0
    for _ in range(a.count):
        try:
            conns.append(socket.create_connection((a.host, a.port), timeout=2))
        except OSError:
            refused += 1
    time.sleep(1.0)
    closed_fast = 0
    for c in conns:
        c.setblocking(False)
        try:
            if c.recv(1) == b"":
                closed_fast += 1
        except BlockingIOError:
            pass
        except OSError:
            closed_fast += 1
    time.sleep(max(0.0, a.hold - 1.0))
    held = 0
    for c in conns:
        try:
            if c.recv(1) != b"":
                held += 1
        except BlockingIOError:
            held += 1
        except OSError:
            pass
    out({"opened": len(conns), "connectRefused": refused, "closedWithin1s": closed_fast,
         "heldAfter": held, "holdSeconds": a.hold})


def cmd_stun(a):
    import os
    txid = os.urandom(12)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(struct.pack(">HHI", 1, 0, 0x2112A442) + txid, (a.host, a.port))
    try:
        data, _ = s.recvfrom(2048)
    except socket.timeout:
        out({"mapped": None})
        return
    kind, length, cookie = struct.unpack(">HHI", data[:8])
    if kind != 0x0101 or cookie != 0x2112A442 or data[8:20] != txid:
        out({"mapped": None, "bad": data.hex()})
        return
    at = 20
    while at + 4 <= 20 + length:
        t, n = struct.unpack(">HH", data[at:at + 4])
        v = data[at + 4:at + 4 + n]
        if t == 0x0020 and v[1] == 1:
            port = struct.unpack(">H", v[2:4])[0] ^ 0x2112
            ip = bytes(b ^ c for b, c in zip(v[4:8], struct.pack(">I", 0x2112A442)))
            out({"mapped": "%s:%d" % (socket.inet_ntoa(ip), port),
                 "local": "%s:%d" % s.getsockname()})
            return
        at += 4 + (n + 3) // 4 * 4
    out({"mapped": None})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("find")
    f.add_argument("code")
    f.add_argument("--iface-ip", required=True)
    f.add_argument("--timeout", type=float, default=10)
    for name in ("session", "oversize", "slowloris", "garbage", "flood", "stun"):
        s = sub.add_parser(name)
        s.add_argument("host")
        s.add_argument("port", type=int)
        s.add_argument("--seconds", type=float, default=20)
        if name == "session":
            s.add_argument("--name", default="PyLan")
            s.add_argument("--no-hello", action="store_true")
            s.add_argument("--chat")
            s.add_argument("--chat-after", type=float, default=0.5)
        if name == "flood":
            s.add_argument("--count", type=int, default=50)
            s.add_argument("--hold", type=float, default=2)
    a = p.parse_args()
    {"find": cmd_find, "session": cmd_session, "oversize": cmd_oversize,
     "slowloris": cmd_slowloris, "garbage": cmd_garbage, "flood": cmd_flood,
     "stun": cmd_stun}[a.cmd](a)


if __name__ == "__main__":
    main()
