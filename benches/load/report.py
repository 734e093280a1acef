#!/usr/bin/env python3
"""Prints the load benchmark's table (Markdown) from run.sh's results.tsv.

Each cell is the median over the rounds of that scenario and target (the mean of the two
middle runs for an even count). Ratios: registrar's req/s over PocketBase's, and for latency
PocketBase's p99 over registrar's (both "how many times better registrar is"). The goals
are issue 7's.
"""

import csv
import os
import statistics
import sys

SCENARIOS = [
    # name, label, goal text, goal check on (ratio, p99 ratio, registrar rps)
    ("get", "GET by id", "≥ 10×", lambda r, p, rps: r >= 10),
    ("list", "list by student (10 items)", "≥ 10×", lambda r, p, rps: r >= 10),
    ("search", "search course+status+dates (≤ 10 items)", "≥ 10×", lambda r, p, rps: r >= 10),
    ("rate", "GET by id at a fixed offered load", "p99 ≤ ⅕", lambda r, p, rps: p >= 5),
    ("create", f"create (registrar {os.environ.get('DURABILITY', 'sync')} / PB WAL NORMAL)", "≥ 4×", lambda r, p, rps: r >= 4),
    ("patch", "PATCH one field", "≥ 4×", lambda r, p, rps: r >= 4),
    ("batch", "batch of 100 patches (registrar only)", "≥ 20,000 ops/s", lambda r, p, rps: rps * 100 >= 20000),
]


# Issue 17's goals for registrar on PostgreSQL (one node); the other scenarios have none there.
POSTGRES_GOALS = {
    "get": ("≥ 3×", lambda r, p, rps: r >= 3),
    "create": ("≥ 1.5×", lambda r, p, rps: r >= 1.5),
}


def scenarios():
    if os.environ.get("ENGINE") != "postgres":
        return SCENARIOS
    return [
        (name, label, *POSTGRES_GOALS.get(name, ("—", lambda r, p, rps: True)))
        for name, label, _, _ in SCENARIOS
    ]


def main(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))

    def cell(scenario, target, field):
        values = [float(r[field]) for r in rows if r["scenario"] == scenario and r["target"] == target]
        return statistics.median(values) if values else None

    def fmt(v, digits=0):
        return "—" if v is None else f"{v:,.{digits}f}"

    print()
    print("| scenario | registrar req/s | p50 ms | p99 ms | PocketBase req/s | p50 ms | p99 ms "
          "| req/s ratio | p99 ratio | goal | met |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for name, label, goal, check in scenarios():
        a = {f: cell(name, "registrar", f) for f in ("rps", "p50_ms", "p99_ms")}
        b = {f: cell(name, "pocketbase", f) for f in ("rps", "p50_ms", "p99_ms")}
        if a["rps"] is None and b["rps"] is None:
            continue
        # At a fixed offered load both sides answer the same req/s: only latency compares.
        ratio = a["rps"] / b["rps"] if a["rps"] and b["rps"] and name != "rate" else None
        p99_ratio = b["p99_ms"] / a["p99_ms"] if a["p99_ms"] and b["p99_ms"] else None
        rps_text = fmt(a["rps"])
        if name == "batch" and a["rps"] is not None:
            rps_text += f" ({a['rps'] * 100:,.0f} ops/s)"
        if name == "rate":
            label = f"GET by id at {float(os.environ.get('RATE') or 0):,.0f} req/s offered (oha, open loop)"
        met = "—"
        if a["rps"] is not None and (name == "batch" or p99_ratio is not None):
            met = "yes" if check(ratio or 0, p99_ratio or 0, a["rps"]) else "no"
            if goal == "—":
                met = "—"
        print(f"| {label} | {rps_text} | {fmt(a['p50_ms'], 2)} | {fmt(a['p99_ms'], 2)} "
              f"| {fmt(b['rps'])} | {fmt(b['p50_ms'], 2)} | {fmt(b['p99_ms'], 2)} "
              f"| {fmt(ratio, 1) + '×' if ratio else '—'} | {fmt(p99_ratio, 1) + '×' if p99_ratio else '—'} "
              f"| {goal} | {met} |")
    print()

    ceiling = cell("ceiling", "ceiling", "rps")
    get = cell("get", "registrar", "rps")
    if ceiling:
        share = f"; registrar's GET by id is {get / ceiling:.0%} of it (goal ≥ 40%)" if get else ""
        print(f"Bare actix-web ceiling (fixed 1.7 KB JSON): {ceiling:,.0f} req/s, "
              f"p50 {cell('ceiling', 'ceiling', 'p50_ms'):.2f} ms, p99 {cell('ceiling', 'ceiling', 'p99_ms'):.2f} ms{share}.")
    sizes = [
        f"{t} {cell('get', t, 'bytes'):,.0f} B"
        for t in ("registrar", "pocketbase")
        if cell("get", t, "bytes") is not None
    ]
    if sizes:
        print(f"GET-by-id response size, headers included: {', '.join(sizes)}.")
    if any(r["scenario"] == "rate" for r in rows):
        print("At the fixed offered load, req/s below the offered rate means that side could not "
              "keep up; oha's latencies count from each request's scheduled start.")
    nodes = [name for name in dict.fromkeys(r["scenario"] for r in rows if r["target"] == "nodes2")]
    if nodes:
        print()
        print("One node against two nodes on the one database (wrk on both ports at once):")
        print()
        print("| scenario | 1 node req/s | p50 ms | p99 ms | 2 nodes req/s | p50 ms | p99 ms | 2 / 1 |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in nodes:
            one = {f: cell(name, "nodes1", f) for f in ("rps", "p50_ms", "p99_ms")}
            two = {f: cell(name, "nodes2", f) for f in ("rps", "p50_ms", "p99_ms")}
            ratio = two["rps"] / one["rps"] if one["rps"] and two["rps"] else None
            print(f"| {name} | {fmt(one['rps'])} | {fmt(one['p50_ms'], 2)} | {fmt(one['p99_ms'], 2)} "
                  f"| {fmt(two['rps'])} | {fmt(two['p50_ms'], 2)} | {fmt(two['p99_ms'], 2)} "
                  f"| {fmt(ratio, 2) + '×' if ratio else '—'} |")
        print()
    failed = [r for r in rows if float(r["errors"]) > 0 or float(r["non2xx"]) > 0]
    for r in failed:
        print(f"WARNING: {r['scenario']} {r['target']} round {r['round']}: "
              f"{r['errors']} socket errors/timeouts, {r['non2xx']} non-2xx answers")


if __name__ == "__main__":
    main(sys.argv[1])
