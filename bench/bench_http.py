#!/usr/bin/env python3
"""HTTP decisions: ``tribune up`` under ``wrk`` (loopback, keep-alive), with a profile.

Every server start gets a fresh home (SQLite, or a fresh PostgreSQL schema with ``--pg``):
``tribune.toml`` is written first (``[audit] group_commit`` as asked), the home is initialised,
then ``tribune up --home H --port P --workers N --log-format text`` runs as a subprocess whose
output a thread drains. The admin key it prints once sets up, through the API, a group, a user,
the tool ``email.send`` (open world, e-mail extractor at ``/to``), an agent, the agent's API
key and a long task naming the recipient; one decision is checked by hand to be ALLOW.
(``http_harness.py`` holds that part and the wrk runs; ``http_profile.py`` the profiling.)

Phases (``--phase``, default all four):

- ``latency``: one process, interleaved call by call: the embedded ``Governor.decide`` and one
  HTTP decision over a keep-alive ``httpx.Client`` to a 1-worker server (same request), for
  both commit modes; the same through ``http.client`` (a lighter client); ``GET /healthz``
  (no auth, no store) and ``GET /v1/me`` (API key check). Added latency = difference of p50s.
- ``sweep``: ``wrk -t T -c C -d D --latency`` POSTing ``/v1/decisions`` (Lua script written
  to a temp file; its ``done`` hook prints one JSON line). Grid: commit mode x server variant
  (``base``, or experiment patches applied through ``sitecustomize``, see http_harness) x
  workers x connections; every dimension's order is reversed on odd repeats; medians over
  repeats. Each cell is checked: no non-2xx, no socket errors, and every decision ``/metrics``
  counted is an ``allow`` (a benchmark of errors or denials is worthless). CPU seconds of the
  server's processes and of wrk (``wait4`` rusage) and the machine's busy share come from
  ``/proc``. Each repeat and commit mode also times the embedded decision in this process as
  the same-moment reference (this VM's speed drifts).
- ``floor``: uvicorn alone (a bare ASGI callable) and a one-route FastAPI app under wrk.
- ``profile``: wrk on ``/healthz``, ``/v1/me`` and ``/v1/decisions``, then, under wrk load,
  ``perf record`` (CPU by library, if perf is installed) and ``py-spy record -r 500 -f raw
  --subprocesses --nonblocking`` on the workers, summarised by layer, bucket and leaf.

    .venv/bin/python bench/bench_http.py [--phase latency,sweep,floor,profile]
        [--workers 1,2,3,4] [--connections 4,8,16,32] [--repeats 3] [--duration 3]
        [--commit default|group|both] [--variants base,noaccesslog+flock] [--max-load 1.0]
        [--pg DSN] [--json out.json]

Needs ``wrk`` (Debian package) and, for the profile, ``py-spy`` (in the venv). Homes are
deleted after each server stops (``--keep`` keeps them); PostgreSQL schemas are dropped.
"""

from __future__ import annotations

import argparse
import collections
import gc
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import tribune

sys.path.insert(0, str(Path(__file__).parent))
from bench_governed import drop_schemas
from http_harness import (
    ARGUMENTS,
    Server,
    decision_body,
    embedded_home,
    load_gate,
    run_wrk,
    running,
    start_server,
    stop_server,
)
from http_profile import phase_floor, phase_profile

# --------------------------------------------------------------------------- phases


def phase_sweep(root: Path, args: argparse.Namespace, report: dict[str, Any]) -> None:
    commits = {"default": [False], "group": [True], "both": [False, True]}[args.commit]
    variants = args.variants.split(",")
    workers = [int(x) for x in args.workers.split(",")]
    conns = [int(x) for x in args.connections.split(",")]
    cells: dict[tuple[str, str, int, int], list[dict[str, Any]]] = collections.defaultdict(list)
    embedded: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    print(f"\n== sweep: wrk -t {args.threads} -d {args.duration}s, {args.repeats} repeats")
    print(f"   load before: {Path('/proc/loadavg').read_text().strip()}")
    started = time.monotonic()
    for rep in range(args.repeats):
        flip = (lambda xs: list(reversed(xs))) if rep % 2 else list
        for gc_on in flip(commits):
            mode = "group" if gc_on else "default"
            if args.embedded:
                e = embedded_rate(root, gc_on, args.duration, args.pg)
                embedded[mode].append(e)
                print(f"  rep {rep} {mode:7} embedded, one process: {e['rps']:7.0f}/s, "
                      f"{e['us_per_req']:,.0f} us CPU/decision", flush=True)  # fmt: skip
            for variant in flip(variants):
                for n in flip(workers):
                    with running(root, n, gc_on, variant, args) as server:
                        run_wrk(root, server, conns[0], args.warmup, args.threads)  # warm-up
                        for c in flip(conns):
                            r = run_wrk(root, server, c, args.duration, args.threads)
                            cells[(mode, variant, n, c)].append(r)
                            print(
                                f"  rep {rep} {mode:7} {variant:13} N={n} c={c:<3} "
                                f"{r['rps']:7.0f}/s p50 {r['p50'] / 1000:6.1f} ms "
                                f"p99 {r['p99'] / 1000:6.1f} ms  server {r['server_cpu']:.2f} "
                                f"wrk {r['wrk_cpu']:.2f} cores, busy {r['machine_busy']:.0%} "
                                f"steal {r['steal']:.0%} {'' if r['ok'] else ' NOT OK'}",
                                flush=True,
                            )
    print(f"   sweep took {time.monotonic() - started:.0f} s; "
          f"load after: {Path('/proc/loadavg').read_text().strip()}")  # fmt: skip
    print(
        "\n| commit | variant | workers | conns | decisions/s | p50 ms | p90 ms | p99 ms "
        "| server cores | us CPU/decision | kernel share | wrk cores | ok |"
    )
    print(
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )
    rows = []
    for (mode, variant, n, c), rs in sorted(cells.items()):

        def med(key: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(statistics.median(r[key] for r in rs))

        row = {
            "commit": mode, "variant": variant, "workers": n, "connections": c,
            "rps": med("rps"), "p50_ms": med("p50") / 1000, "p90_ms": med("p90") / 1000,
            "p99_ms": med("p99") / 1000, "server_cpu": med("server_cpu"),
            "us_per_req": med("server_us_per_req"), "wrk_cpu": med("wrk_cpu"),
            "sys": med("server_sys"),
            "rps_all": [round(r["rps"]) for r in rs], "ok": all(r["ok"] for r in rs),
        }  # fmt: skip
        rows.append(row)
        print(
            f"| {mode} | {variant} | {n} | {c} | {row['rps']:,.0f} | {row['p50_ms']:.1f} "
            f"| {row['p90_ms']:.1f} | {row['p99_ms']:.1f} | {row['server_cpu']:.2f} "
            f"| {row['us_per_req']:,.0f} | {row['sys']:.0%} | {row['wrk_cpu']:.2f} "
            f"| {'yes' if row['ok'] else 'NO'} |"
        )
    for mode, es in sorted(embedded.items()):
        rps, us, cores = (statistics.median(e[k] for e in es) for k in ("rps", "us_per_req", "cpu"))
        print(f"| {mode} | embedded, one process, no HTTP | - | - | {rps:,.0f} | | | "
              f"| {cores:.2f} | {us:,.0f} | | | |")  # fmt: skip
    report["embedded"] = dict(embedded)
    report["sweep"] = {"rows": rows, "raw": {"|".join(map(str, k)): v for k, v in cells.items()}}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def embedded_rate(root: Path, group_commit: bool, seconds: int, pg: str | None) -> dict[str, Any]:
    """The same decision embedded, one process, one thread, as fast as it goes: the
    same-moment reference for the HTTP numbers (this machine's speed drifts)."""
    tr, task_id, store_url = embedded_home(root, group_commit, pg)
    try:
        decide = tr.governor.decide
        for _ in range(200):
            decide(task_id, "email.send", ARGUMENTS)
        count, cpu0, t0 = 0, time.process_time(), time.monotonic()
        deadline = t0 + seconds
        while time.monotonic() < deadline:
            for _ in range(50):
                decide(task_id, "email.send", ARGUMENTS)
            count += 50
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    finally:
        tr.close()
        shutil.rmtree(Path(tr.home).parent, ignore_errors=True)
        if pg:
            drop_schemas(pg, (store_url,))
    return {"rps": count / wall, "us_per_req": cpu / count * 1e6, "cpu": cpu / wall}


def phase_latency(root: Path, args: argparse.Namespace, report: dict[str, Any]) -> None:
    print(f"\n== latency: {args.rounds} rounds x {args.calls} calls, interleaved call by call")
    embedded = {g: embedded_home(root, g, args.pg) for g in (False, True)}
    servers: dict[bool, Server] = {}
    try:
        for g in (False, True):
            servers[g] = start_server(root, 1, g, args.variants.split(",")[0], args.pg)
    except BaseException:
        for s in servers.values():
            stop_server(s, keep=args.keep)
        raise
    clients = {
        g: httpx.Client(
            base_url=s.url,
            headers={"Authorization": f"Bearer {s.agent_key}", "Content-Type": "application/json"},
        )
        for g, s in servers.items()
    }
    admin = httpx.Client(
        base_url=servers[True].url, headers={"Authorization": f"Bearer {servers[True].admin_key}"}
    )
    bodies = {g: json.dumps(decision_body(s.task_id)).encode() for g, s in servers.items()}
    # the same request through a lighter client: how much of the difference is httpx's own
    raw = http.client.HTTPConnection("127.0.0.1", int(servers[True].url.rpartition(":")[2]))
    raw_headers = {
        "Authorization": f"Bearer {servers[True].agent_key}",
        "Content-Type": "application/json",
    }
    names = {
        "embedded decide, intent then decision": ("emb", False),
        "HTTP decision, intent then decision": ("http", False),
        "embedded decide, group commit": ("emb", True),
        "HTTP decision, group commit": ("http", True),
        "HTTP decision, group commit, stdlib http.client": ("raw", True),
        "HTTP GET /healthz (no auth, no store)": ("healthz", True),
        "HTTP GET /v1/me (API key check)": ("me", True),
    }
    pc = time.perf_counter_ns

    def one(kind: str, g: bool) -> float:
        t0 = pc()
        if kind == "emb":
            tr, task_id, _ = embedded[g]
            ok = tr.governor.decide(task_id, "email.send", ARGUMENTS).allowed
        elif kind == "http":
            resp = clients[g].post("/v1/decisions", content=bodies[g])
            ok = resp.status_code == 200 and b'"allowed":true' in resp.content
        elif kind == "raw":
            raw.request("POST", "/v1/decisions", body=bodies[g], headers=raw_headers)
            got = raw.getresponse()
            ok = got.status == 200 and b'"allowed":true' in got.read()
        elif kind == "healthz":
            ok = admin.get("/healthz").status_code == 200
        else:
            ok = admin.get("/v1/me").status_code == 200
        t1 = pc()
        if not ok:
            raise SystemExit(f"{kind} failed")
        return (t1 - t0) / 1000

    try:
        for _ in range(200):
            for kind, g in names.values():
                one(kind, g)
        rows: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
        gc.disable()
        for _ in range(args.rounds):
            samples: dict[str, list[float]] = {k: [] for k in names}
            for _ in range(args.calls):
                for name, (kind, g) in names.items():
                    samples[name].append(one(kind, g))
            for k, v in samples.items():
                rows[k].append((pct(v, 0.5), pct(v, 0.99)))
            gc.collect()
        gc.enable()
    finally:
        for c in (*clients.values(), admin):
            c.close()
        raw.close()
        for s in servers.values():
            stop_server(s, keep=args.keep)
        for tr, _, _ in embedded.values():
            tr.close()
        if args.pg:
            urls = [s.store_url for s in servers.values()] + [e[2] for e in embedded.values()]
            drop_schemas(args.pg, tuple(urls))
    print("\n| measurement | p50 (us) | p99 (us) |\n| --- | ---: | ---: |")
    med: dict[str, tuple[float, float]] = {}
    for k, per_round in rows.items():
        p50s, p99s = zip(*per_round, strict=True)
        med[k] = (statistics.median(p50s), statistics.median(p99s))
        print(f"| {k} | {med[k][0]:,.0f} | {med[k][1]:,.0f} |")
    keys = list(names)
    for emb, over in ((keys[0], keys[1]), (keys[2], keys[3]), (keys[2], keys[4])):
        added = med[over][0] - med[emb][0]
        print(f"HTTP added latency at p50 ({over.partition(', ')[2]}): {added:,.0f} us "
              f"({med[over][0] / med[emb][0]:.2f}x)")  # fmt: skip
    report["latency"] = {k: {"p50_us": v[0], "p99_us": v[1]} for k, v in med.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase", default="latency,sweep,floor,profile")
    ap.add_argument("--workers", default="1,2,3,4")
    ap.add_argument("--connections", default="4,8,16,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of wrk after each start")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument(
        "--no-embedded",
        dest="embedded",
        action="store_false",
        help="skip the embedded reference run of each repeat and commit mode",
    )
    ap.add_argument("--commit", choices=("default", "group", "both"), default="both")
    ap.add_argument(
        "--variants",
        default="base",
        help="comma list of server variants: base, or +-joined PATCHES (noaccesslog+flock)",
    )
    ap.add_argument("--pg", metavar="DSN", help="PostgreSQL instead of SQLite (fresh schemas)")
    ap.add_argument("--rounds", type=int, default=10, help="latency phase")
    ap.add_argument("--calls", type=int, default=300, help="latency phase, per round")
    ap.add_argument("--profile-workers", default="1,2")
    ap.add_argument("--profile-connections", type=int, default=16)
    ap.add_argument("--profile-seconds", type=int, default=8)
    ap.add_argument("--keep-profile", metavar="DIR", help="copy the raw py-spy files here")
    ap.add_argument("--max-load", type=float, default=0, help="wait for loadavg <= this first")
    ap.add_argument("--json", metavar="FILE", help="write every number here")
    ap.add_argument("--keep", action="store_true", help="keep the homes")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (apt-get install wrk)")
    root = Path(tempfile.mkdtemp(prefix="tribune-http-"))
    versions = {
        "python": sys.version.split()[0],
        "tribune": tribune.__version__,
        **{m: __import__(m).__version__ for m in ("uvicorn", "fastapi", "pydantic", "httptools")},
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
        "sqlite": __import__("sqlite3").sqlite_version,
        "cpus": os.cpu_count(),
    }
    print("versions:", versions)
    report: dict[str, Any] = {"versions": versions, "args": vars(args)}
    if args.max_load:
        report["load_gate"] = load_gate(args.max_load, 600)
    report["loadavg_start"] = Path("/proc/loadavg").read_text().strip()
    print("loadavg:", report["loadavg_start"])
    phases = args.phase.split(",")
    try:
        if "latency" in phases:
            phase_latency(root, args, report)
        if "sweep" in phases:
            phase_sweep(root, args, report)
        if "floor" in phases:
            phase_floor(root, args, report)
        if "profile" in phases:
            phase_profile(root, args, report)
    finally:
        report["loadavg_end"] = Path("/proc/loadavg").read_text().strip()
        print("loadavg at end:", report["loadavg_end"])
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
