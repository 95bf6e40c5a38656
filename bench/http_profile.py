"""Profiling for ``bench_http.py``: perf (CPU by library) and py-spy (Python stacks) on the
workers under wrk load, the summary of the samples by layer, bucket and leaf, and the floor of
uvicorn and FastAPI alone."""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from http_harness import Server, free_port, run_wrk, running, stop_server

PY_SPY = Path(sys.executable).parent / "py-spy"


LAYERS = [
    ("uvicorn + httptools (all of a request)", "httptools_impl.py"),
    ("  response head written to the socket", "httptools_impl.py:524)"),
    ("  response body written to the socket", "httptools_impl.py:551)"),
    ("Edge middleware (metrics + access log)", "Edge.__call__ (tribune/http/app.py"),
    ("  access log (logging)", "logging/__init__.py"),
    ("  prometheus metrics", "prometheus_client/"),
    ("FastAPI dependency solving", "solve_dependencies (fastapi/"),
    ("  authentication (API key)", "authenticate (tribune/http/security.py"),
    ("  pydantic (request model)", "pydantic/"),
    ("route decide (own_task + governor + JSON)", "decide (tribune/http/routes/decisions.py"),
    ("  own_task (task read for the agent check)", "own_task (tribune/http/security.py"),
    ("  Governor.decide", "decide (tribune/services/governor.py"),
    ("    Cedar (cedarpy)", "cedarpy/"),
    ("    audit append (record_many)", "record_many (tribune/services/audit.py"),
    ("      SQLite append", "_append_sqlite (tribune/store/sql_audit.py"),
    ("    task read (store)", "_load (tribune/services/governor.py"),
    ("    argument extraction", "extract (tribune/core/extract.py"),
]


# Exclusive buckets: each sample goes to the first bucket whose frame is on its stack.
BUCKETS = [
    ("Cedar (cedarpy)", "cedarpy/"),
    ("audit append (encode, hash, SQLite commit)", "record_many (tribune/services/audit.py"),
    ("governor, rest (task read, extraction, context, digests)", "decide (tribune/services/gov"),
    ("own_task (route's task read)", "own_task (tribune/http/security.py"),
    ("authentication (API key read, hash, holder)", "authenticate (tribune/http/security.py"),
    ("pydantic (request body)", "pydantic/"),
    ("FastAPI dependency solving, rest", "solve_dependencies (fastapi/"),
    ("route, rest (verdict to JSON, metrics)", "decide (tribune/http/routes/decisions.py"),
    ("access log line", "logging/__init__.py"),
    ("prometheus metrics (Edge)", "prometheus_client/"),
    ("socket writes (response head + body)", "httptools_impl.py:5"),
    ("uvicorn, Starlette, FastAPI routing and middleware", ""),
]


# Stacks that are not a worker's event loop (py-spy --nonblocking may cut a stack's root, so
# the event loop is "everything else").
BACKGROUND = ("Thread._bootstrap", "Multiprocess.run (uvicorn", "resource_tracker")


def summarise_profile(path: Path, top: int = 20) -> dict[str, Any]:
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = background = checkpoints = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        if any(mark in stack for mark in BACKGROUND):
            background += n
            if "AuditService.checkpoint" in stack:
                checkpoints += n
            continue
        total += n
        for name, needle in LAYERS:
            if needle in stack:
                inclusive[name] += n
        exclusive[next(name for name, needle in BUCKETS if needle in stack)] += n
        leaves[stack.rsplit(";", 1)[-1]] += n
    share = {k: v / max(1, total) for k, v in exclusive.items()}
    print(
        f"\nworker event-loop samples: {total:,}; other threads and the supervisor: "
        f"{background:,}, of them signed audit checkpoints: {checkpoints:,} "
        f"({100 * checkpoints / max(1, total):.1f}% of the event-loop samples)"
    )
    print("\n| layer (inclusive) | share of worker samples |\n| --- | ---: |")
    for name, _ in LAYERS:
        print(f"| {name} | {100 * inclusive[name] / max(1, total):.1f}% |")
    print("\n| bucket (exclusive) | share |\n| --- | ---: |")
    for name, _ in BUCKETS:
        print(f"| {name} | {100 * share.get(name, 0):.1f}% |")
    print("\n| leaf (self) | share |\n| --- | ---: |")
    for name, n in leaves.most_common(top):
        print(f"| `{name}` | {100 * n / max(1, total):.1f}% |")
    return {
        "samples": total,
        "checkpoint_samples": checkpoints,
        "inclusive": {k: inclusive[k] / max(1, total) for k, _ in LAYERS},
        "exclusive": share,
        "self": {k: n / max(1, total) for k, n in leaves.most_common(top)},
    }


def profile_under_load(
    root: Path, server: Server, args: argparse.Namespace, n: int
) -> dict[str, Any]:
    """One wrk run on /v1/decisions; perf (CPU by library, when installed) samples the workers
    first, then py-spy (Python stacks). py-spy runs ``--nonblocking``: its default mode stops
    the process for every sample, and those stops land in the socket writes (measured here: the
    response head write at ~29% of samples blocking, 0-3% non-blocking or with perf)."""
    seconds = args.profile_seconds
    perf = shutil.which("perf")
    holder: dict[str, Any] = {}
    load = (root, server, args.profile_connections, seconds * (2 if perf else 1) + 3, args.threads)
    wrk = threading.Thread(target=lambda: holder.update(r=run_wrk(*load)))
    wrk.start()
    time.sleep(1.5)
    out: dict[str, Any] = {}
    workers = [p for p in server.pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    workers = workers or [server.process.pid]  # one worker: uvicorn serves in the parent
    if perf:
        data = root / f"perf-{n}.data"
        rec = subprocess.run(
            [perf, "record", "-F", "999", "-o", str(data), "-p", ",".join(map(str, workers)),
             "--", "sleep", str(seconds)],
            capture_output=True, text=True,
        )  # fmt: skip
        rep = subprocess.run(
            [perf, "report", "-i", str(data), "--sort", "dso", "--stdio"],
            capture_output=True, text=True,
        )  # fmt: skip
        if rec.returncode == 0 and rep.returncode == 0:
            dsos = re.findall(r"^\s+([\d.]+)%\s+(\S.*?)\s*$", rep.stdout, re.M)
            print("\n| CPU by library (perf, cpu-clock) | share |\n| --- | ---: |")
            for share, dso in dsos[:14]:
                print(f"| `{dso}` | {share}% |")
            out[f"N={n} perf"] = {dso: float(share) for share, dso in dsos}
        else:
            print(f"  perf failed: {rec.stderr[-300:]} {rep.stderr[-300:]}")
    raw = root / f"profile-{n}.txt"
    spy = subprocess.run(
        [str(PY_SPY), "record", "-r", "500", "-f", "raw", "--subprocesses", "--nonblocking",
         "-d", str(seconds), "-o", str(raw), "--pid", str(server.process.pid)],
        capture_output=True, text=True,
    )  # fmt: skip
    wrk.join()
    if spy.returncode != 0:
        raise SystemExit(f"py-spy failed:\n{spy.stdout}\n{spy.stderr}")
    r = holder["r"]
    print(f"  while profiling: {r['rps']:.0f}/s{'' if r['ok'] else '  NOT OK'}")
    if args.keep_profile:
        shutil.copy(raw, Path(args.keep_profile) / raw.name)
    out[f"N={n} profile"] = summarise_profile(raw)
    return out


FLOOR_APPS = """
from fastapi import FastAPI
from fastapi.responses import Response

BODY = b'{"status":"ok"}'


async def raw(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"15")]})
    await send({"type": "http.response.body", "body": BODY})


fastapi_app = FastAPI()


@fastapi_app.get("/healthz")
async def healthz() -> Response:
    return Response(BODY, media_type="application/json")
"""


def phase_floor(root: Path, args: argparse.Namespace, report: dict[str, Any]) -> None:
    """The same uvicorn (httptools, uvloop, one worker) serving a bare ASGI callable and a
    one-route FastAPI app: what the server and the framework cost before any Tribune code."""
    folder = root / "floor" / "app"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "floor_apps.py").write_text(FLOOR_APPS)
    print(f"\n== floor: uvicorn, one worker, wrk -c {args.profile_connections} GET /healthz")
    out = {}
    for app in ("raw", "fastapi_app"):
        port = free_port()
        cmd = [sys.executable, "-m", "uvicorn", f"floor_apps:{app}", "--app-dir", str(folder)]
        cmd += ["--port", str(port), "--lifespan", "off", "--no-access-log"]
        cmd += ["--log-level", "warning"]
        process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True
        )
        server = Server(process, f"http://127.0.0.1:{port}", folder, "")
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            run_wrk(root, server, args.profile_connections, args.warmup, args.threads, "/healthz")
            r = run_wrk(
                root, server, args.profile_connections, args.duration, args.threads, "/healthz"
            )
        finally:
            stop_server(server, keep=True)
        out[app] = r
        ok = "" if r["ok"] else "  NOT OK"
        cpu = f"{r['server_us_per_req']:.0f} us CPU/request, wrk {r['wrk_cpu']:.2f} cores"
        print(f"  {app:12} {r['rps']:7.0f}/s p50 {r['p50'] / 1000:.1f} ms, {cpu}{ok}")
    report["floor"] = out


def phase_profile(root: Path, args: argparse.Namespace, report: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    for n in [int(x) for x in args.profile_workers.split(",")]:
        group = args.commit != "default"
        level = args.variants.split(",")[0]
        print(f"\n== profile: N={n}, c={args.profile_connections}, "
              f"{'group' if group else 'default'} commit, variant {level}")  # fmt: skip
        with running(root, n, group, level, args) as server:
            run_wrk(root, server, args.profile_connections, args.warmup, args.threads)
            for path in ("/healthz", "/v1/me", "/v1/decisions"):
                r = run_wrk(
                    root, server, args.profile_connections, args.duration, args.threads, path
                )
                out[f"N={n} {path}"] = r
                print(f"  wrk {path:14} {r['rps']:7.0f}/s p50 {r['p50'] / 1000:.1f} ms "
                      f"server {r['server_cpu']:.2f} cores ({r['server_us_per_req']:.0f} us "
                      f"CPU/request, {r['server_sys']:.0%} kernel), wrk {r['wrk_cpu']:.2f} "
                      f"cores, machine busy {r['machine_busy']:.0%}"
                      f"{'' if r['ok'] else '  NOT OK'}")  # fmt: skip
            out.update(profile_under_load(root, server, args, n))
    report["profile"] = out
