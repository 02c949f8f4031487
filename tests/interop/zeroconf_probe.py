#!/usr/bin/env python3
"""An independent mDNS peer (python-zeroconf) for crates/lan's tests.

Run inside a network namespace the test created; it binds only to --ip
(IPv4 only), never to every interface.

  zeroconf_probe.py browse   --ip 10.77.0.2
  zeroconf_probe.py register --ip 10.77.0.1 --name Bob --port 8787 --txt v=3 peers=0/8 ...

Prints one JSON object per line on stdout ({"ev": ..., "t_ms": ...}) and runs
until stdin closes (register then unregisters, sending goodbye packets).
"""
import argparse
import json
import socket
import sys
import time

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

T0 = time.monotonic()


def emit(**kw):
    kw["t_ms"] = round((time.monotonic() - T0) * 1000)
    print(json.dumps(kw), flush=True)


def txt_of(info):
    return {
        k.decode("utf-8", "replace"): (v.decode("utf-8", "replace") if v is not None else None)
        for k, v in (info.properties or {}).items()
    }


def browse(zc, ty):
    def on_change(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Removed:
            emit(ev="removed", name=name)
            return
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        ev = "added" if state_change is ServiceStateChange.Added else "updated"
        if info is None:
            emit(ev=ev + "-unresolved", name=name)
            return
        emit(ev=ev, name=name, port=info.port, server=info.server,
             addresses=info.parsed_addresses(), txt=txt_of(info))

    ServiceBrowser(zc, ty, handlers=[on_change])
    emit(ev="browsing")


def register(zc, ty, args):
    props = dict(kv.split("=", 1) for kv in args.txt)
    info = ServiceInfo(ty, f"{args.name}.{ty}", addresses=[socket.inet_aton(args.ip)],
                       port=args.port, properties=props, server="zeroconf-probe.local.")
    zc.register_service(info)
    emit(ev="registered", name=info.name)
    return info


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["browse", "register"])
    p.add_argument("--ip", required=True)
    p.add_argument("--type", default="_midi-rdv._tcp.local.")
    p.add_argument("--name", default="zeroconf probe")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--txt", nargs="*", default=[])
    args = p.parse_args()
    zc = Zeroconf(interfaces=[args.ip], ip_version=IPVersion.V4Only)
    info = None
    try:
        if args.mode == "browse":
            browse(zc, args.type)
        else:
            info = register(zc, args.type, args)
        sys.stdin.read()  # until the test closes our stdin
    finally:
        if info is not None:
            zc.unregister_service(info)
            emit(ev="unregistered")
        zc.close()


if __name__ == "__main__":
    main()
