#!/usr/bin/env python3
"""Two tenants on one server (issue 13): how much does one tenant's flood slow the other?

    fairness.py run --binary target/release/registrar [--rounds 3] [--seconds 5] ...

starts the binary on loopback once per (round, configuration), each time on a fresh data dir,
makes a victim tenant and a flood tenant, and measures the victim's GET-by-id latency
(sequential, one connection, --victim-rate requests/s) alone and then while the flood tenant
drives --flood-conns connections as fast as they are answered (GETs by id or creates). The
configurations (--configs, each a list of extra server flags) alternate within every round,
so a shared machine's background load falls on each of them alike. A configuration may
hold `flood-rate=N`: the flood tenant then gets requests_per_second N (a tenant limit, not a
server flag), to compare a rate limit with the server's own shares.

Example (the figures in docs/SECURITY.md, "Issue 13"):

    python3 benches/load/fairness.py run --binary target/release/registrar --rounds 3 \
        --seconds 4 --flood-conns 64 --flood-kind get \
        --configs "--max-in-flight-per-tenant 0 --blocking-per-tenant 0" ""

The victim and the flood run in separate processes (`fairness.py victim`, `fairness.py
flood`), so the flood's client work never delays the victim's clock. Python only, standard
library only: raw HTTP/1.1 keep-alive on asyncio streams. Everything it starts stops by
itself: the server is killed at the end of each run, every phase is bounded in time.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

OPERATOR_KEY = "op_fairness-bench"


# ---------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client over one kept-alive connection.

class Connection:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method, path, key, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Authorization: Bearer {key}\r\nContent-Length: {len(data)}\r\n")
        if body is not None:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + data)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        status = int(headers[9:12])
        length = 0
        close = False
        for line in headers.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        payload = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
            await self.open()
        return status, payload

    def close(self):
        if self.writer is not None:
            self.writer.close()


def http(base, method, path, key, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read() or b"null")


# ---------------------------------------------------------------------------------------------
# The two roles, each its own process.

def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def victim(args):
    """Sequential GETs by id at a fixed rate; prints a JSON line of latencies in ms."""
    host, port = args.address.split(":")
    conn = Connection(host, int(port))
    await conn.open()
    latencies, statuses = [], {}
    interval = 1.0 / args.rate
    deadline = time.monotonic() + args.seconds
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        started = time.perf_counter()
        status, _ = await conn.request("GET", args.path, args.key)
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            next_at = time.monotonic()
    conn.close()
    latencies.sort()
    print(json.dumps({
        "n": len(latencies),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": latencies[-1] if latencies else None,
        "statuses": statuses,
    }))


async def flood(args):
    """`--conns` connections in a closed loop; prints a JSON line of counts by status."""
    host, port = args.address.split(":")
    statuses = {}
    deadline = time.monotonic() + args.seconds

    async def one(i):
        conn = Connection(host, int(port))
        await conn.open()
        n = 0
        while time.monotonic() < deadline:
            if args.kind == "create":
                body = {"first_name": f"F{i}", "last_name": f"L{n}"}
                status, _ = await conn.request("POST", args.path, args.key, body)
            else:
                status, _ = await conn.request("GET", args.path, args.key)
            statuses[status] = statuses.get(status, 0) + 1
            n += 1
        conn.close()

    await asyncio.gather(*(one(i) for i in range(args.conns)))
    print(json.dumps({"statuses": statuses, "per_second": sum(statuses.values()) / args.seconds}))


# ---------------------------------------------------------------------------------------------
# The orchestration.

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, flags, data_dir):
    port = free_port()
    env = dict(os.environ, RUST_LOG=os.environ.get("REGISTRAR_LOG", "info"))
    server = subprocess.Popen(
        [binary, "--bind", f"127.0.0.1:{port}", "--data-dir", data_dir,
         "--operator-key", OPERATOR_KEY, *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).read()
            return server, base
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the server did not start")


def make_tenant(base, name):
    http(base, "POST", "/admin/tenants", OPERATOR_KEY, {"id": name})
    key = http(base, "POST", f"/admin/tenants/{name}/keys", OPERATOR_KEY,
               {"role": "write", "name": "bench"})["key"]
    contact = http(base, "POST", f"/contacts/{name}", key,
                   {"first_name": "Ada", "last_name": "Lovelace"})["id"]
    return key, f"/contacts/{name}/{contact}"


def child(role, address, key, path, seconds, extra):
    return subprocess.Popen(
        [sys.executable, __file__, role, "--address", address, "--key", key, "--path", path,
         "--seconds", str(seconds), *extra],
        stdout=subprocess.PIPE, text=True)


def measure(binary, flags, args):
    # `flood-rate=N` is not a server flag: it sets the flood tenant's requests_per_second.
    rate = [f.split("=", 1)[1] for f in flags if f.startswith("flood-rate=")]
    flags = [f for f in flags if not f.startswith("flood-rate=")]
    data_dir = tempfile.mkdtemp(prefix="registrar-fairness-")
    server, base = start_server(binary, flags, data_dir)
    try:
        address = base.removeprefix("http://")
        victim_key, victim_path = make_tenant(base, "victim")
        flood_key, flood_get = make_tenant(base, "flood")
        if rate:
            http(base, "PATCH", "/admin/tenants/flood", OPERATOR_KEY,
                 {"limits": {"requests_per_second": float(rate[0])}})
        flood_path = "/contacts/flood" if args.flood_kind == "create" else flood_get
        victim_extra = ["--rate", str(args.victim_rate)]
        alone = child("victim", address, victim_key, victim_path, args.seconds, victim_extra)
        alone_result = json.loads(alone.communicate(timeout=args.seconds + 60)[0])
        flooding = child("flood", address, flood_key, flood_path, args.seconds + 2,
                         ["--conns", str(args.flood_conns), "--kind", args.flood_kind])
        time.sleep(1)  # the flood is running before the victim's clock starts
        during = child("victim", address, victim_key, victim_path, args.seconds, victim_extra)
        during_result = json.loads(during.communicate(timeout=args.seconds + 60)[0])
        flood_result = json.loads(flooding.communicate(timeout=args.seconds + 60)[0])
        return alone_result, during_result, flood_result
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def run(args):
    configs = [c.split() for c in args.configs]
    rows = []
    print(f"# flood: {args.flood_conns} connections of {args.flood_kind}; victim: GET by id at "
          f"{args.victim_rate}/s on one connection; {args.seconds} s per phase; "
          f"{args.rounds} rounds, configurations interleaved", flush=True)
    print("round\tconfig\talone p50\talone p99\tflood p50\tflood p99\tvictim n\t"
          "victim statuses\tflood req/s\tflood statuses", flush=True)
    for round_no in range(1, args.rounds + 1):
        for flags in configs:
            alone, during, flood_result = measure(args.binary, flags, args)
            label = " ".join(flags) or "(defaults)"
            rows.append((label, alone, during, flood_result))
            print(f"{round_no}\t{label}\t{alone['p50']:.2f}\t{alone['p99']:.2f}\t"
                  f"{during['p50']:.2f}\t{during['p99']:.2f}\t{during['n']}\t"
                  f"{during['statuses']}\t{flood_result['per_second']:.0f}\t"
                  f"{flood_result['statuses']}", flush=True)
    print("# medians over rounds (ms)")
    for flags in configs:
        label = " ".join(flags) or "(defaults)"
        mine = [r for r in rows if r[0] == label]
        med = lambda key, phase: statistics.median(r[phase][key] for r in mine)
        print(f"{label}\talone p50 {med('p50', 1):.2f}\tp99 {med('p99', 1):.2f}\t"
              f"flooded p50 {med('p50', 2):.2f}\tp99 {med('p99', 2):.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--binary", default="target/release/registrar")
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--seconds", type=float, default=5)
    r.add_argument("--flood-conns", type=int, default=64)
    r.add_argument("--flood-kind", choices=["get", "create"], default="get")
    r.add_argument("--victim-rate", type=float, default=100)
    r.add_argument("--configs", nargs="+",
                   default=["--max-in-flight-per-tenant 0", ""],
                   help="server flags of each configuration, one string each; "
                        "flood-rate=N sets the flood tenant's requests_per_second instead")
    for role in ("victim", "flood"):
        p = sub.add_parser(role)
        p.add_argument("--address", required=True)
        p.add_argument("--key", required=True)
        p.add_argument("--path", required=True)
        p.add_argument("--seconds", type=float, required=True)
        p.add_argument("--rate", type=float, default=100)
        p.add_argument("--conns", type=int, default=64)
        p.add_argument("--kind", choices=["get", "create"], default="get")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    elif args.command == "victim":
        asyncio.run(victim(args))
    else:
        asyncio.run(flood(args))


if __name__ == "__main__":
    main()
