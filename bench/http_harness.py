"""The harness behind ``bench_http.py``: fresh homes, ``tribune up`` as a subprocess (with
optional experiment patches), the API set-up of the benchmark decision, and one ``wrk`` run with
its checks and the CPU the server and wrk used (from ``/proc`` and ``wait4``)."""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import tribune
from tribune.bootstrap import CONFIG_TEMPLATE, init_home
from tribune.core.model import Entitlements, ExtractorSpec, RiskFacts, Tool

sys.path.insert(0, str(Path(__file__).parent))
from bench_governed import drop_schemas, pg_schema_url

RECIPIENT = "customer@client.example"
ARGUMENTS = {"to": RECIPIENT, "subject": "hi", "body": "hello"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Experiments, not Tribune code: imported by every server process (parent and spawned workers)
# through PYTHONPATH when a variant names them, to measure a suggested change before anyone
# writes it. "noaccesslog": the per-request access log line off (tribune.access at WARNING).
# "routefirst": the decisions router moved to the front of the app's routes (FastAPI matches
# routes in order, and /v1/decisions came after the registry and task routers).
# "flock": SQLite appends also take an exclusive flock(2) on a lock file, so a worker waiting
# for another's commit wakes as soon as it ends instead of polling SQLite's busy handler (which
# sleeps 1, 2, 5, 10 ... ms between tries) with its event loop blocked.
SITECUSTOMIZE = """
import os
patches = os.environ.get("TRIBUNE_BENCH_PATCH", "").split(",")
if "noaccesslog" in patches:
    import logging
    logging.getLogger("tribune.access").setLevel(logging.WARNING)
if "flock" in patches:
    import fcntl
    from tribune.store import sql_audit
    _append = sql_audit.SqlAuditLog._append_sqlite
    def _append_sqlite(self, entries):
        fd = getattr(self, "_bench_flock", None)
        if fd is None:
            path = str(self._engine.url.database) + ".bench-lock"
            fd = self._bench_flock = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return _append(self, entries)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    sql_audit.SqlAuditLog._append_sqlite = _append_sqlite
if "routefirst" in patches:
    from tribune.http import app as app_module
    from tribune.http.routes import decisions
    _create_app = app_module.create_app
    def create_app(*args, **kwargs):
        app = _create_app(*args, **kwargs)
        routes = app.router.routes
        hot = [r for r in routes if getattr(r, "original_router", None) is decisions.router]
        routes[:] = hot + [r for r in routes if all(r is not h for h in hot)]
        app.router._routes_version += 1
        app.state.bench_routefirst = len(hot)
        return app
    app_module.create_app = create_app
"""
PATCHES = ("noaccesslog", "flock", "routefirst")
ENV_VARIANTS = {"framework": ("TRIBUNE_FAST_PATHS", "0")}  # decisions via the FastAPI route

LUA = """
wrk.method = "{method}"
wrk.path = "{path}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
{body}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


# --------------------------------------------------------------------------- homes and servers


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    home: Path
    store_url: str
    admin_key: str = ""
    agent_key: str = ""
    task_id: str = ""
    lines: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=200))

    @property
    def pids(self) -> list[int]:
        """The uvicorn parent and every descendant (workers, resource tracker)."""
        out, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_home(home: Path, group_commit: bool, store_url: str) -> None:
    home.mkdir(parents=True, mode=0o700)
    text = CONFIG_TEMPLATE.replace(
        "group_commit = false", f"group_commit = {str(group_commit).lower()}"
    )
    if store_url:
        text = text.replace("[store]\n", f'[store]\nurl = "{store_url}"\n', 1)
    assert f"group_commit = {str(group_commit).lower()}" in text
    (home / "tribune.toml").write_text(text)
    init_home(home)  # keeps this tribune.toml; adds the pack, keys and the active policy


def start_server(
    root: Path, workers: int, group_commit: bool, variant: str, pg: str | None
) -> Server:
    """A fresh home served by `tribune up`; ``variant`` is ``base`` or ``+``-joined names
    from PATCHES (e.g. ``noaccesslog+flock``)."""
    names = [p for p in variant.split("+") if p != "base"]
    patches = [p for p in names if p not in ENV_VARIANTS]
    if not set(patches) <= set(PATCHES):
        raise SystemExit(
            f"unknown variant `{variant}`: base or +-joined {PATCHES + tuple(ENV_VARIANTS)}"
        )
    env = {**os.environ, "COLUMNS": "300"}
    env.pop("TRIBUNE_BENCH_PATCH", None)
    for name in names:
        if name in ENV_VARIANTS:
            key, value = ENV_VARIANTS[name]
            env[key] = value
    if patches:
        (root / "patch").mkdir(exist_ok=True)
        (root / "patch" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        paths = [str(root / "patch"), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env["TRIBUNE_BENCH_PATCH"] = ",".join(patches)
    store_url = pg_schema_url(pg) if pg else ""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=root)) / "h"
    write_home(home, group_commit, store_url)
    port = free_port()
    cmd = [sys.executable, "-m", "tribune.cli.main", "up", "--home", str(home)]
    cmd += ["--port", str(port), "--workers", str(workers), "--log-format", "text"]
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    server = Server(process, f"http://127.0.0.1:{port}", home, store_url)
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not server.admin_key:
        line = process.stdout.readline()
        if not line:
            break
        if line.strip().startswith("trb_"):
            server.admin_key = line.strip()
        else:
            server.lines.append(line)

    def drain() -> None:  # a full pipe would block the server
        assert process.stdout is not None
        for line in process.stdout:
            server.lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    if not server.admin_key:
        stop_server(server, keep=True)
        raise SystemExit("tribune up printed no admin key:\n" + "".join(server.lines))
    wait_ready(server, workers)
    setup_through_api(server)
    # the patches took: no access lines during the set-up; the lock file exists
    if "noaccesslog" in patches and any("tribune.access" in line for line in server.lines):
        raise SystemExit("the noaccesslog patch did not apply")
    if "flock" in patches and not pg and not list(home.glob("*.bench-lock")):
        raise SystemExit("the flock patch did not apply")
    return server


def wait_ready(server: Server, workers: int) -> None:
    for _ in range(600):
        started = sum("Application startup complete" in line for line in server.lines)
        try:
            up = httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            up = False
        if up and started >= workers:
            return
        if server.process.poll() is not None:
            break
        time.sleep(0.1)
    stop_server(server, keep=True)
    raise SystemExit("tribune up did not come up:\n" + "".join(server.lines))


def setup_through_api(server: Server) -> None:
    with tribune.connect(server.url, api_key=server.admin_key) as admin:
        admin.post("/v1/groups", {"name": "support"})
        admin.post(
            "/v1/users", {"name": "alice", "email": "alice@example.com", "groups": ["support"]}
        )
        admin.backend.request(
            "PUT",
            "/v1/tools/email.send",
            {
                "risk": {"read_only": False, "destructive": False, "open_world": True},
                "groups": ["email"],
                "extractors": [{"kind": "email", "pointer": "/to", "target": True}],
            },
        )
        admin.post(
            "/v1/agents",
            {
                "name": "bench-bot",
                "owner": "user:alice",
                "purpose": "benchmark",
                "environment": "development",
                "entitlements": {"tools": ["email.send"], "environments": ["development"]},
            },
        )
        server.agent_key = admin.post(
            "/v1/keys", {"principal": "agent:bench-bot", "role": "agent"}
        )["token"]
    with tribune.connect(server.url, api_key=server.agent_key) as agent:
        task = agent.post(
            "/v1/tasks",
            {"purpose": "send mail", "tools": ["email.send"], "targets": [RECIPIENT], "ttl": 86400},
        )
        server.task_id = task["id"]
        verdict = agent.post("/v1/decisions", decision_body(server.task_id))
    if not verdict["allowed"]:
        raise SystemExit(f"the benchmark decision is not ALLOW: {verdict}")


def decision_body(task_id: str) -> dict[str, Any]:
    return {"task": task_id, "tool": "email.send", "arguments": ARGUMENTS}


def stop_server(server: Server, keep: bool = False) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    if not keep:
        shutil.rmtree(server.home.parent, ignore_errors=True)


@contextmanager
def running(
    root: Path, workers: int, group_commit: bool, variant: str, args: argparse.Namespace
) -> Iterator[Server]:
    server = start_server(root, workers, group_commit, variant, args.pg)
    try:
        yield server
    finally:
        stop_server(server, keep=args.keep)
        if args.pg:
            drop_schemas(args.pg, (server.store_url,))


# --------------------------------------------------------------------------- measuring


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of these processes."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        user, system = user + int(fields[11]), system + int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def machine_ticks() -> tuple[int, int, int]:
    """(all, idle + iowait, steal) ticks of every CPU since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values[:8]), values[3] + values[4], values[7]


def decisions_by_effect(server: Server) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for m in re.finditer(r"^tribune_decisions_total\{([^}]*)\} (\S+)$", text, re.M):
        effect = re.search(r'effect="([^"]*)"', m.group(1))
        key = effect.group(1) if effect else "?"
        out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


def lua_script(root: Path, server: Server, path: str) -> Path:
    if path == "/v1/decisions":
        body = json.dumps(decision_body(server.task_id), separators=(",", ":"))
        method, body_line = "POST", f"wrk.body = '{body}'"
        key = server.agent_key
    else:
        method, body_line, key = "GET", "", server.admin_key
    script = root / f"wrk-{abs(hash((server.url, path)))}.lua"
    script.write_text(LUA.format(method=method, path=path, key=key, body=body_line))
    return script


def run_wrk(
    root: Path, server: Server, connections: int, seconds: int, threads: int,
    path: str = "/v1/decisions",
) -> dict[str, Any]:  # fmt: skip
    """One wrk run; returns its numbers plus CPU use, machine load and the allow check."""
    script = lua_script(root, server, path)
    before = decisions_by_effect(server) if path == "/v1/decisions" else {}
    pids = server.pids
    cpu0, ticks0, t0 = cpu_seconds(pids), machine_ticks(), time.monotonic()
    cmd = ["wrk", "-t", str(min(threads, connections)), "-c", str(connections)]
    cmd += ["-d", f"{seconds}s", "--latency", "-s", str(script), server.url + path]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None
    out = proc.stdout.read()
    wall = time.monotonic() - t0
    cpu1, ticks1 = cpu_seconds(pids), machine_ticks()
    found = re.search(r"^WRKJSON (\{.*\})$", out, re.M)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"wrk failed ({proc.returncode}):\n{out}")
    r: dict[str, Any] = json.loads(found.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["socket_errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    used = sum(cpu1) - sum(cpu0)
    r["server_cpu"] = used / wall  # cores
    r["server_sys"] = (cpu1[1] - cpu0[1]) / used if used else 0.0  # kernel share
    r["wrk_cpu"] = (usage.ru_utime + usage.ru_stime) / wall
    all_ticks, idle, steal = (b - a for a, b in zip(ticks0, ticks1, strict=True))
    r["machine_busy"] = 1 - idle / all_ticks if all_ticks else 0.0
    r["steal"] = steal / all_ticks if all_ticks else 0.0
    r["server_us_per_req"] = used / max(1, r["requests"]) * 1e6
    if path == "/v1/decisions":
        after = decisions_by_effect(server)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        r["allowed"] = delta.get("allow", 0)
        r["not_allowed"] = sum(v for k, v in delta.items() if k != "allow")
        # wrk stops counting at its deadline; requests in flight then may still be decided
        r["ok"] = (
            r["non2xx"] == 0
            and r["socket_errors"] == 0
            and r["not_allowed"] == 0
            and r["allowed"] >= r["requests"]
        )
    else:
        r["ok"] = r["non2xx"] == 0 and r["socket_errors"] == 0
    return r


def load_gate(limit: float, wait_s: float) -> float:
    """Wait (polling every 30 s, up to wait_s) until the 1-minute load is <= limit."""
    deadline = time.monotonic() + wait_s
    while True:
        load = float(Path("/proc/loadavg").read_text().split()[0])
        if load <= limit or time.monotonic() >= deadline:
            return load
        print(f"  load {load:.2f} > {limit}: waiting 30 s", flush=True)
        time.sleep(30)


def embedded_home(root: Path, group_commit: bool, pg: str | None) -> tuple[Any, str, str]:
    home = Path(tempfile.mkdtemp(prefix="embedded-", dir=root)) / "h"
    store_url = pg_schema_url(pg) if pg else ""
    write_home(home, group_commit, store_url)
    tr = tribune.open(home)
    tr.registry.add_group("support")
    tr.registry.add_user("alice", email="alice@example.com", groups=("support",))
    tr.registry.register_tool(
        Tool(
            "email.send",
            risk=RiskFacts(read_only=False, destructive=False, open_world=True),
            groups=("email",),
            extractors=(ExtractorSpec("email", "/to", target=True),),
        )
    )
    tr.registry.register_agent(
        "bench-bot",
        owner="user:alice",
        purpose="benchmark",
        environment="development",
        entitlements=Entitlements(
            tools=frozenset({"email.send"}), environments=frozenset({"development"})
        ),
    )
    task = tr.start_task(
        "bench-bot", purpose="send mail", tools=["email.send"], targets=[RECIPIENT], ttl=86400
    )
    assert tr.governor.decide(task.id, "email.send", ARGUMENTS).allowed
    return tr, task.id, store_url
