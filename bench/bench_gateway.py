#!/usr/bin/env python3
"""The MCP gateway's added latency: the same ``echo`` call direct to an upstream, through a bare
relay and through ``tribune.gateway``, side by side, over stdio and streamable HTTP, with 1 and
16 concurrent clients.

Set-up (a fresh home per run): ``init_home``, one agent entitled to ``up.echo``, one task and
task token per client; ``up.echo`` is registered as the gateway would register it (read-only,
closed world) so concurrent gateway starts do not race to register it. The upstream is
``tests/gateway/upstream_server.py`` (its ``CALL_LOG`` unset, so it writes nothing per call).

- **stdio**: each client spawns its own processes, as an MCP host does: direct, the upstream;
  through the gateway, ``python -m tribune.gateway --home H --config F`` with the client's task
  token in ``TRIBUNE_TASK_TOKEN``, which spawns its own upstream.
- **HTTP**: one upstream process serving streamable HTTP, and one gateway process
  (``--http``) whose upstream is that same process; each client has its own ``httpx2``
  client, session and (through the gateway) task token as its bearer token.
- **relay** (unless ``--no-relay``): this file run as a bare MCP proxy (``serve_relay``): the
  SDK's low-level server and client, the gateway's stdio transport or the SDK's HTTP app,
  nothing of Tribune. What the gateway adds over it is Tribune's own share.
- ``--variant NAME=SRC`` adds the gateway of another source tree (e.g. a copy of ``src`` from
  before a change) as one more path, interleaved with the others.

All clients run in this process on one event loop (the official ``mcp`` client, protocol
``--mode``). A round runs, for each path, ``--calls`` calls shared by the clients, every client
doing its share in a row (``--pause`` ms apart) and all clients at once; the order of the paths
is reversed on odd rounds. Per round and path: p50 and p99 of the call latencies; reported: the
medians over rounds, the added latency over the direct path (difference of the median p50s and
p99s), the per-round ratios of p50, and for 1 client whether the issue's target is met. Every
result is checked (not an error, the echoed text), and at the end every gateway call must have
an ``allow`` decision and an ``ok`` result in the audit log. CPU per call of each path's own
process (relay, gateway; from ``/proc``), of this process (the clients) and the machine's busy
share are reported too.

``--profile S`` then attaches ``py-spy`` (``.venv/bin/pip install py-spy``) for S seconds to
each gateway while one client calls it, and prints where the samples of its threads holding
the GIL fall (``--gil``: idle and waiting threads are not counted), by part (decision, result,
SDK client, transport, ...) and within the decision and the result; ``--profile-out DIR``
keeps the raw files.

One file on purpose (so above 600 lines): it is also the relay's program, started by path.

    .venv/bin/python bench/bench_gateway.py [--transports stdio,http] [--clients 1,16]
        [--rounds 10] [--calls 200] [--warmup 50] [--pause MS] [--mode auto|legacy]
        [--no-relay] [--variant NAME=SRC ...] [--profile S] [--profile-out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

import tribune
from tribune.bootstrap import init_home, open_tribune
from tribune.core.model import Entitlements, RecordKind, RiskFacts, Tool

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
UPSTREAM = ROOT / "tests" / "gateway" / "upstream_server.py"
THIS = str(Path(__file__).resolve())
PY_SPY = Path(sys.executable).parent / "py-spy"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TEXT = "hello gateway"
ARGS = {"text": TEXT}


# --------------------------------------------------------------------------- set-up


@dataclass
class Home:
    path: Path
    tokens: list[tuple[str, str]]  # (task id, task token), one per client
    env: dict[str, str] = field(default_factory=dict)  # for every process started


def make_home(root: Path, clients: int) -> Home:
    path = root / "home"
    init_home(path)
    tokens = []
    with open_tribune(path) as tr:
        reg = tr.registry
        reg.add_user("alice", email="alice@example.com")
        reg.register_tool(
            Tool(
                "up.echo",
                description="Return the text.",
                input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
                risk=RiskFacts(read_only=True, destructive=False, open_world=False),
                groups=("up",),
            )
        )
        reg.register_agent(
            "bench",
            owner="user:alice",
            purpose="gateway benchmark",
            environment="development",
            entitlements=Entitlements(
                tools=frozenset({"up.echo"}), environments=frozenset({"development"})
            ),
        )
        agent = reg.resolve_agent("bench")
        for i in range(clients):
            task = tr.start_task("bench", purpose=f"client {i}", tools=["up.echo"], ttl=86400)
            tokens.append((task.id, tr.tokens.issue(task, agent, str(agent.owner))))
    env = {"PYTHONPATH": str(SRC), "PATH": os.environ.get("PATH", "")}
    return Home(path, tokens, env)


def upstream_toml(name: str, *, url: str | None = None) -> str:
    if url is not None:
        return f'[[gateway.upstreams]]\nname = "{name}"\nurl = "{url}"\ntimeout = 30\n'
    return (
        f'[[gateway.upstreams]]\nname = "{name}"\ncommand = {json.dumps(sys.executable)}\n'
        f"args = [{json.dumps(str(UPSTREAM))}]\n"
        f"env = {{ PYTHONPATH = {json.dumps(str(SRC))} }}\ntimeout = 30\n"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx2.get(url, timeout=1)
            return
        except httpx2.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.1)


# --------------------------------------------------------------------------- CPU from /proc


def _cpu_of(pid: str) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def processes(marker: str) -> list[str]:
    """Pids of the processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "py-spy" not in cmdline:
            found.append(entry.name)
    return found


def cpu_seconds(pids: list[str]) -> float:
    return sum(_cpu_of(p) for p in pids)


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


# --------------------------------------------------------------------------- clients


@dataclass
class Path_:
    """One way to call ``echo``: its sessions (one per client), the tool's name there and the
    processes whose CPU is the path's own (the gateway's)."""

    name: str
    sessions: list[Client]
    tool: str
    cpu_marker: str | None = None


@asynccontextmanager
async def http_session(url: str, token: str | None, mode: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None) as client:
            yield client


def stdio_upstream(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(UPSTREAM)], env=env)


def stdio_gateway(home: Home, config: Path, token: str, src: Path) -> StdioServerParameters:
    args = ["-m", "tribune.gateway", "--home", str(home.path), "--config", str(config)]
    env = {**home.env, "PYTHONPATH": str(src), "TRIBUNE_TASK_TOKEN": token}
    return StdioServerParameters(command=sys.executable, args=args, env=env)


async def open_all(
    stack: AsyncExitStack, contexts: list[AbstractAsyncContextManager[Client]]
) -> list[Client]:
    """Open sessions one after another, each kept open until ``stack`` closes."""
    return [await stack.enter_async_context(c) for c in contexts]


async def call_once(client: Client, tool: str) -> float:
    t0 = time.perf_counter_ns()
    result = await client.call_tool(tool, ARGS)
    t1 = time.perf_counter_ns()
    content = result.content
    if result.is_error or not content or getattr(content[0], "text", None) != TEXT:
        raise SystemExit(f"{tool}: unexpected result {result.model_dump_json()[:300]}")
    return (t1 - t0) / 1000.0


async def run_path(path: Path_, calls: int, pause: float = 0.0) -> tuple[list[float], float]:
    """Every client does ``calls`` calls in a row (``pause`` seconds apart: an agent's model
    thinks between calls), all clients at once; (latencies in us, wall seconds)."""
    out: list[float] = []

    async def client(session: Client) -> None:
        for _ in range(calls):
            out.append(await call_once(session, path.tool))
            if pause:
                await anyio.sleep(pause)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for session in path.sessions:
            tg.start_soon(client, session)
    return out, time.perf_counter() - t0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    paths: list[Path_], args: argparse.Namespace, label: str
) -> dict[str, list[dict[str, float]]]:
    """Interleaved rounds over ``paths``; per path, one row of figures per round."""
    for path in paths:  # warm-up: imports, caches, connections
        await run_path(path, -(-args.warmup // len(path.sessions)))
    pids = {p.name: processes(p.cpu_marker) for p in paths if p.cpu_marker}
    rounds: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
    gc.collect()
    gc.disable()
    try:
        for r in range(args.rounds):
            for path in paths if r % 2 == 0 else list(reversed(paths)):
                own0, me0, busy0 = cpu_seconds(pids.get(path.name, [])), self_cpu(), machine_busy()
                per_client = -(-args.calls // len(path.sessions))
                samples, wall = await run_path(path, per_client, args.pause / 1000)
                own1, me1, busy1 = cpu_seconds(pids.get(path.name, [])), self_cpu(), machine_busy()
                n = len(samples)
                rounds[path.name].append(
                    {
                        "p50": quantile(samples, 0.5),
                        "p99": quantile(samples, 0.99),
                        "rate": n / wall,
                        "path_cpu_us": (own1 - own0) / n * 1e6,
                        "client_cpu_us": (me1 - me0) / n * 1e6,
                        "busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
                    }
                )
            gc.collect()
            line = "  ".join(
                f"{name} p50 {rows[-1]['p50']:7,.0f} p99 {rows[-1]['p99']:7,.0f}"
                for name, rows in rounds.items()
            )
            print(f"  {label} round {r}: {line} us", flush=True)
    finally:
        gc.enable()
    return dict(rounds)


# --------------------------------------------------------------------------- transports


@asynccontextmanager
async def stdio_paths(
    home: Home, root: Path, clients: int, mode: str, gateways: dict[str, Path], relay: bool
) -> AsyncIterator[list[Path_]]:
    """The direct path, the bare relay's and one path per gateway (name: its source tree)."""
    async with AsyncExitStack() as stack:
        direct = await open_all(
            stack,
            [Client(stdio_upstream(home.env), mode=mode, cache=None) for _ in range(clients)],
        )
        paths = [Path_("direct", direct, "echo")]
        if relay:
            relayed = StdioServerParameters(
                command=sys.executable, args=[THIS, "--serve-relay", "stdio"], env=home.env
            )
            sessions = await open_all(
                stack, [Client(relayed, mode=mode, cache=None) for _ in range(clients)]
            )
            paths.append(Path_("relay", sessions, "up.echo", cpu_marker="--serve-relay stdio"))
        for name, src in gateways.items():
            config = root / f"gateway-stdio-{name}.toml"  # also marks its processes
            config.write_text("[gateway]\n" + upstream_toml("up"))
            sessions = await open_all(
                stack,
                [
                    Client(stdio_gateway(home, config, token, src), mode=mode, cache=None)
                    for _, token in home.tokens[:clients]
                ],
            )
            paths.append(Path_(name, sessions, "up.echo", cpu_marker=f"--config {config}"))
        yield paths


@dataclass
class HttpServers:
    upstream: str
    gateways: dict[str, tuple[str, str]]  # name: (its URL, what marks its process)
    procs: list[subprocess.Popen[bytes]]


def start_http(home: Home, root: Path, gateways: dict[str, Path], relay: bool) -> HttpServers:
    """One upstream serving streamable HTTP; the bare relay and one gateway process per variant
    in front of it."""
    up_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(UPSTREAM), "--http", str(up_port)],
        env=home.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs = [upstream]
    try:
        wait_http(f"http://127.0.0.1:{up_port}/", upstream, "the HTTP upstream")
        up_url = f"http://127.0.0.1:{up_port}/mcp"
        served: dict[str, tuple[str, str]] = {}
        if relay:
            where = f"127.0.0.1:{free_port()}"
            relayed = subprocess.Popen(
                [sys.executable, THIS, "--serve-relay", where, "--upstream", up_url],
                env=home.env,
                stdout=subprocess.DEVNULL,
            )
            procs.append(relayed)
            wait_http(f"http://{where}/", relayed, "the relay")
            served["relay"] = (f"http://{where}/mcp", f"--serve-relay {where}")
        for name, src in gateways.items():
            port = free_port()
            config = root / f"gateway-http-{name}.toml"
            config.write_text("[gateway]\n" + upstream_toml("up", url=up_url))
            argv = ["--home", str(home.path), "--config", str(config)]
            gateway = subprocess.Popen(
                [sys.executable, "-m", "tribune.gateway", *argv, "--http", f"127.0.0.1:{port}"],
                env={**home.env, "PYTHONPATH": str(src)},
                stdout=subprocess.DEVNULL,
            )
            procs.append(gateway)
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/.well-known/oauth-protected-resource/mcp", gateway, "a gateway")
            served[name] = (f"{base}/mcp", f"--config {config}")
        return HttpServers(up_url, served, procs)
    except BaseException:
        stop(procs)
        raise


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def http_paths(
    home: Home, servers: HttpServers, clients: int, mode: str
) -> AsyncIterator[list[Path_]]:
    async with AsyncExitStack() as stack:
        direct = await open_all(
            stack, [http_session(servers.upstream, None, mode) for _ in range(clients)]
        )
        paths = [Path_("direct", direct, "echo")]
        for name, (url, marker) in servers.gateways.items():
            tokens = [None if name == "relay" else t for _, t in home.tokens[:clients]]
            sessions = await open_all(stack, [http_session(url, t, mode) for t in tokens])
            paths.append(Path_(name, sessions, "up.echo", cpu_marker=marker))
        yield paths


# --------------------------------------------------------------------------- the bare relay


def serve_relay(upstream: str, http: str | None) -> None:
    """A bare MCP proxy built as the gateway is (the SDK's low-level server, the gateway's stdio
    transport or the SDK's streamable HTTP app, one SDK client to the upstream) with nothing of
    Tribune: no token check, no decision, no record. ``up.<tool>`` goes to ``upstream`` (a URL,
    or ``stdio``: the test upstream as a child process). Its added latency is the floor under
    the gateway's: what relaying through one more MCP process costs with this SDK."""
    import mcp.types as types
    from mcp.server import Server, ServerRequestContext

    from tribune.gateway.pipes import stdio

    target: StdioServerParameters | str = upstream
    if upstream == "stdio":
        env = {"PYTHONPATH": str(SRC)}
        target = StdioServerParameters(command=sys.executable, args=[str(UPSTREAM)], env=env)
    held: dict[str, Client] = {}

    @asynccontextmanager
    async def lifespan(_: Server[None]) -> AsyncIterator[None]:
        async with Client(target, mode="auto", cache=None) as client:
            held["up"] = client
            yield None

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        found = await held["up"].session.list_tools()
        tools = [t.model_copy(update={"name": f"up.{t.name}"}) for t in found.tools]
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        result = await held["up"].session.call_tool(
            params.name.removeprefix("up."),
            params.arguments or {},
            allow_input_required=True,
            allow_claimed=True,
        )
        if not isinstance(result, types.CallToolResult):
            raise RuntimeError("the relay passes tool results only")
        return result

    server: Server[None] = Server(
        "relay", lifespan=lifespan, on_list_tools=list_tools, on_call_tool=call_tool
    )
    if http is None:

        async def serve() -> None:
            async with stdio() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(serve)
    else:
        import uvicorn

        host, _, port = http.rpartition(":")
        app = server.streamable_http_app(host=host)
        uvicorn.run(app, host=host, port=int(port), log_level="warning")


# --------------------------------------------------------------------------- profile


async def profile(path: Path_, seconds: float, out: Path, label: str) -> dict[str, Any]:
    """py-spy on the gateway process while one client calls it in a loop."""
    if not PY_SPY.exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    assert path.cpu_marker is not None
    pids = processes(path.cpu_marker)
    pid = pids[0]  # with one client, one gateway process
    raw = out / f"{label}.txt"
    spy = subprocess.Popen(
        [str(PY_SPY), "record", "--pid", pid, "--rate", "1000", "--format", "raw", "--threads",
         "--gil", "--nonblocking", "--duration", str(int(seconds)), "--output", str(raw)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    await anyio.sleep(1.0)  # py-spy attaches
    count = 0
    session = path.sessions[0]
    while spy.poll() is None:
        await call_once(session, path.tool)
        count += 1
    if spy.returncode != 0 or not raw.exists():
        raise SystemExit(f"py-spy failed: {spy.stderr.read().decode() if spy.stderr else ''}")
    summary = summarise(raw)
    summary["calls"] = count
    print_profile(label, summary)
    return summary


# What a sample was doing: first the parts named anywhere in its stack (most specific first),
# so time inside Governor.decide counts as the decision wherever it was called from; else the
# library its innermost frame is in.
STACK_PARTS = (
    ("Governor.decide", "decide: intent and decision records, policy"),
    ("Governor.finish", "finish: result record, session update"),
    ("IdentityService.authenticate", "task token check"),
    ("Gateway._visible", "tools/list visibility"),
    ("AuditService.checkpoint", "audit checkpoints (a background thread)"),
    ("(mcp/client/", "SDK client to the upstream (and httpx2)"),
    ("(httpx2/", "SDK client to the upstream (and httpx2)"),
    ("(httpcore2/", "SDK client to the upstream (and httpx2)"),
    ("(tribune/gateway/pipes", "stdio transport"),
    ("(mcp/server/stdio", "stdio transport"),
)
# py-spy names files from site-packages on, e.g. `serve_one (mcp/server/runner.py:815)`.
LEAF_PARTS = (
    ("(tribune/gateway/", "gateway, other (argument checks, routing)"),
    ("(jsonschema/", "gateway, other (argument checks, routing)"),
    ("(referencing/", "gateway, other (argument checks, routing)"),
    ("(mcp/", "SDK server (dispatch, validation, JSON)"),
    ("(mcp_types/", "SDK server (dispatch, validation, JSON)"),
    ("(pydantic", "SDK server (dispatch, validation, JSON)"),
    ("(opentelemetry/", "SDK server (dispatch, validation, JSON)"),
    ("(uvicorn/", "HTTP server (uvicorn, Starlette)"),
    ("(starlette/", "HTTP server (uvicorn, Starlette)"),
    ("(anyio/", "event loop, threads (asyncio, anyio)"),
    ("(asyncio/", "event loop, threads (asyncio, anyio)"),
    ("(threading.py", "event loop, threads (asyncio, anyio)"),
    ("(selectors.py", "event loop, threads (asyncio, anyio)"),
    ("(queue.py", "event loop, threads (asyncio, anyio)"),
)


# Within the decision and the result: where their time goes (first found in the stack).
INNER_PARTS = (
    ("ApprovalService.approved", "decide: approved-ticket lookup"),
    ("CompiledPolicy.decide", "decide: policy evaluation (Cedar)"),
    ("AuditService.record_many", "decide: intent and decision records"),
    ("Governor._load", "decide: task, agent and tool reads"),
    ("Governor._evaluate", "decide: context (targets, facts)"),
    ("Governor.decide", "decide: other (digests, arguments)"),
    ("SqlStore.merge_session", "finish: session update"),
    ("AuditService.record", "finish: result record"),
    ("Governor.finish", "finish: other (output digest)"),
)


def inner_part_of(stack: str) -> str | None:
    for needle, name in INNER_PARTS:
        if needle in stack:
            return name
    return None


def part_of(stack: str, leaf: str) -> str:
    for needle, name in STACK_PARTS:
        if needle in stack:
            return name
    for needle, name in LEAF_PARTS:
        if needle in leaf:
            return name
    return "other"


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    """py-spy's raw samples by thread, by part (``part_of``) and by leaf function."""
    threads: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    inners: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        threads[frames[0].partition(": ")[2] or "?"] += count
        parts[part_of(stack, frames[-1])] += count
        inner = inner_part_of(stack)
        if inner is not None:
            inners[inner] += count
        leaves[frames[-1]] += count
    return {
        "samples": total,
        "threads": threads.most_common(),
        "parts": parts.most_common(),
        "inner": sorted(inners.items()),
        "leaves": leaves.most_common(top),
    }


def print_profile(label: str, s: dict[str, Any]) -> None:
    total = max(1, s["samples"])
    per_call = s["samples"] / max(1, s["calls"])  # 1 kHz: one sample is 1 ms holding the GIL
    print(f"\n== profile: {label}: {s['samples']} samples holding the GIL at 1 kHz over "
          f"{s['calls']} calls ({per_call:.2f} ms per call)")  # fmt: skip
    print("  by thread:", ", ".join(f"{t} {n / total:.0%}" for t, n in s["threads"]))
    print("\n| part | share | ms per call (GIL held, under py-spy) |\n| --- | ---: | ---: |")
    for name, n in s["parts"]:
        print(f"| {name} | {n / total:.0%} | {n / max(1, s['calls']):.2f} |")
    print("\n| within decide and finish | share of all |\n| --- | ---: |")
    for name, n in s["inner"]:
        print(f"| {name} | {n / total:.1%} |")
    print("  leaves:")
    for name, n in s["leaves"]:
        print(f"    {n / total:5.1%}  {name[:150]}")


# --------------------------------------------------------------------------- report


def check_audit(home: Home, calls: int, *, exact: bool) -> dict[str, int]:
    """Every gateway call must have an allow decision and an ok result (``exact``: as many
    as calls made; a variant may record nothing, e.g. a bare relay for comparison)."""
    effects: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[str] = collections.Counter()
    with open_tribune(home.path) as tr:
        kinds = [RecordKind.DECISION, RecordKind.RESULT]
        after = 0
        while found := tr.store.find_records(after_seq=after, limit=10_000, kinds=kinds):
            for rec in found:
                data = json.loads(rec.body)["data"]
                if rec.kind is RecordKind.DECISION:
                    effects[data["effect"]] += 1
                else:
                    statuses[data["status"]] += 1
            after = found[-1].seq
    counted = {"allow": effects["allow"], "ok": statuses["ok"], "calls": calls}
    if effects.keys() - {"allow"} or statuses.keys() - {"ok"}:
        raise SystemExit(f"unexpected audit records: {dict(effects)} {dict(statuses)}")
    if effects["allow"] != statuses["ok"] or (exact and statuses["ok"] != calls):
        raise SystemExit(f"audit records do not match the calls made: {counted}")
    return counted


def median_of(rows: list[dict[str, float]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def cell(rounds: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians over rounds per path; per gateway path, what it adds over the direct path."""
    d = rounds["direct"]
    out: dict[str, Any] = {
        name: {k: median_of(rows, k) for k in rows[0]} for name, rows in rounds.items()
    }
    for name, g in rounds.items():
        if name == "direct":
            continue
        ratios = [b["p50"] / a["p50"] for a, b in zip(d, g, strict=True)]
        out[name] |= {
            "added_p50": median_of(g, "p50") - median_of(d, "p50"),
            "added_p99": median_of(g, "p99") - median_of(d, "p99"),
            "added_p50_per_round": statistics.median(
                b["p50"] - a["p50"] for a, b in zip(d, g, strict=True)
            ),
            "over_relay_p50": (  # paired round by round, as the paths ran side by side
                statistics.median(
                    b["p50"] - a["p50"] for a, b in zip(rounds["relay"], g, strict=True)
                )
                if "relay" in rounds and name != "relay"
                else None
            ),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    return out


def print_tables(cells: dict[tuple[str, int], dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n{args.rounds} rounds x {args.calls} calls per path, medians over rounds")
    print("\n| transport | clients | path | p50 ms | p99 ms | calls/s | own process CPU us/call "
          "| client CPU us/call | machine busy |")  # fmt: skip
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (transport, n), c in cells.items():
        for path, f in c.items():
            own = f"{f['path_cpu_us']:,.0f}" if path != "direct" else ""
            print(
                f"| {transport} | {n} | {path} | {f['p50'] / 1000:.2f} | {f['p99'] / 1000:.2f} "
                f"| {f['rate']:,.0f} | {own} | {f['client_cpu_us']:,.0f} | {f['busy']:.0%} |"
            )
    print("\n| transport | clients | path | added p50 ms | added p99 ms | p50 ratio per round "
          "(median, min-max) | p50 over the relay ms (per round, median) | target (1 client: "
          "p50 <= 2, p99 <= 10 ms) |")  # fmt: skip
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for (transport, n), c in cells.items():
        for path, f in c.items():
            if path == "direct":
                continue
            target = ""
            over = f"{f['over_relay_p50'] / 1000:.2f}" if f["over_relay_p50"] is not None else ""
            if n == 1 and path != "relay":
                met = f["added_p50"] <= 2000 and f["added_p99"] <= 10_000
                target = "met" if met else "not met"
            print(
                f"| {transport} | {n} | {path} | {f['added_p50'] / 1000:.2f} "
                f"| {f['added_p99'] / 1000:.2f} | {f['ratio_median']:.2f}x "
                f"({f['ratio_min']:.2f}-{f['ratio_max']:.2f}) | {over} | {target} |"
            )


# --------------------------------------------------------------------------- main


def variants(args: argparse.Namespace) -> dict[str, Path]:
    """The gateways to measure: this tree's, and each ``--variant NAME=SRC``."""
    out = {"gateway": SRC}
    for text in args.variant:
        name, sep, src = text.partition("=")
        if not sep or not name.isidentifier() or name in out or name == "direct":
            raise SystemExit(f"--variant wants NAME=SRC with a new name: `{text}`")
        if not (Path(src) / "tribune" / "gateway").is_dir():
            raise SystemExit(f"--variant {name}: `{src}` holds no tribune/gateway")
        out[name] = Path(src).resolve()
    return out


async def run(args: argparse.Namespace, root: Path, report: dict[str, Any]) -> None:
    clients = [int(x) for x in args.clients.split(",")]
    transports = args.transports.split(",")
    gateways = variants(args)
    home = make_home(root, max(clients))
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    spy_out = Path(args.profile_out) if args.profile_out else root / "profiles"
    spy_out.mkdir(parents=True, exist_ok=True)
    gateway_calls = 0
    servers = start_http(home, root, gateways, args.relay) if "http" in transports else None
    try:
        for transport in transports:
            for n in clients:
                label = f"{transport}, {n} client(s)"
                print(f"\n== {label}: starting sessions", flush=True)
                if transport == "stdio":
                    opened = stdio_paths(home, root, n, args.mode, gateways, args.relay)
                else:
                    assert servers is not None
                    opened = http_paths(home, servers, n, args.mode)
                async with opened as paths:
                    rounds = await measure(paths, args, label)
                    made = n * (-(-args.warmup // n) + args.rounds * -(-args.calls // n))
                    gateway_calls += made * len(gateways)
                    if args.profile and n == 1:
                        for path in paths[1:]:
                            if path.name == "relay":
                                continue
                            key = f"{path.name}-{transport}"
                            found = await profile(path, args.profile, spy_out, key)
                            report.setdefault("profile", {})[key] = found
                            gateway_calls += found["calls"]
                cells[(transport, n)] = cell(rounds)
                report.setdefault("raw", {})[f"{transport}/{n}"] = rounds
    finally:
        if servers is not None:
            stop(servers.procs)
    report["audit"] = audit = check_audit(home, gateway_calls, exact=len(gateways) == 1)
    print(f"\naudit: {audit['allow']} allow decisions and ok results for {audit['calls']} calls")
    print_tables(cells, args)
    report["cells"] = {f"{t}/{n}": c for (t, n), c in cells.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transports", default="stdio,http")
    ap.add_argument("--clients", default="1,16", help="comma list of concurrent clients")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument(
        "--calls", type=int, default=200, help="calls per path per round, shared by the clients"
    )
    ap.add_argument("--warmup", type=int, default=50, help="calls per path first, shared")
    ap.add_argument(
        "--pause", type=float, default=0.0, help="ms each client waits between its calls"
    )
    ap.add_argument("--mode", default="auto", help="client protocol: auto (2026-07-28) or legacy")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="also measure the gateway of another source tree (e.g. a copy of src before a "
        "change), interleaved with the others",
    )
    ap.add_argument("--profile", type=float, default=0, help="seconds of py-spy per transport")
    ap.add_argument("--profile-out", metavar="DIR", help="keep py-spy's raw files here")
    ap.add_argument("--json", metavar="FILE", help="write every number here")
    ap.add_argument("--keep", action="store_true", help="keep the home")
    ap.add_argument("--no-relay", dest="relay", action="store_false", help="skip the bare relay")
    ap.add_argument("--serve-relay", metavar="stdio|HOST:PORT", help=argparse.SUPPRESS)
    ap.add_argument("--upstream", default="stdio", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_relay:  # this file is also the bare relay's program
        serve_relay(args.upstream, None if args.serve_relay == "stdio" else args.serve_relay)
        return
    root = Path(tempfile.mkdtemp(prefix="tribune-gwbench-"))
    versions = {
        "python": sys.version.split()[0],
        "tribune": tribune.__version__,
        **{m: _version(m) for m in ("mcp", "anyio", "uvicorn", "httpx2", "py-spy")},
        "sqlite": __import__("sqlite3").sqlite_version,
        "cpus": os.cpu_count(),
    }
    print("versions:", versions)
    report: dict[str, Any] = {"versions": versions, "args": vars(args)}
    report["loadavg_start"] = Path("/proc/loadavg").read_text().strip()
    print("loadavg:", report["loadavg_start"], flush=True)
    try:
        anyio.run(run, args, root, report)
    finally:
        report["loadavg_end"] = Path("/proc/loadavg").read_text().strip()
        print("loadavg at end:", report["loadavg_end"])
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def _version(name: str) -> str | None:
    """A package's version, or None when it is not installed (py-spy is optional)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
