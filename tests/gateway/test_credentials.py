"""Credentials for upstreams: a lease (or a brokered secret) reaches the upstream, never the
agent. Over HTTP one lease per allowed call, in a header of that call's request only; over stdio
one lease and one process per task, in the process's environment. Real parts throughout: a
Tribune home with credential sources, the secret sealed in its store, upstreams that are
processes (``header_upstream.py`` over HTTP, ``env_upstream.py`` over stdio) and the official
``mcp`` client in front of the gateway.

Over 600 lines on purpose: HTTP and stdio lending share one home, its credential sources and
the upstreams' reports; split, each half would rebuild them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from mcp.shared.exceptions import MCPError

from tribune.bootstrap import init_home, open_tribune
from tribune.core.model import Entitlements, LeaseState
from tribune.errors import ConfigError
from tribune.gateway.config import parse_gateway
from tribune.gateway.http_app import create_gateway_app
from tribune.gateway.server import Gateway

from .conftest import (
    ERAS,
    SRC,
    Home,
    _populate,
    free_port,
    http_client,
    served,
    stdio_gateway,
    text_of,
)

HERE = Path(__file__).parent
SECRET = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
CREDENTIALS = """
[credentials.web-key]
backend = "secret"
secret = "web-key"
tools = ["web.whoami", "web.echo", "web.sleep"]
ttl = 60

[credentials.web-token]
backend = "token"
audience = "https://web.test"
tools = ["web.whoami", "web.echo"]
ttl = 60

[credentials.narrow-key]
backend = "secret"
secret = "web-key"
tools = ["narrow.echo"]

[credentials.vault-token]
backend = "token"
audience = "https://vault.test"
tools = ["vault.whoami"]
ttl = 60

[credentials.vault-brief]
backend = "token"
audience = "https://vault.test"
tools = ["vault.whoami"]
ttl = 3

[credentials.safe-key]
backend = "secret"
secret = "web-key"
tools = ["safe.whoami"]
ttl = 2
"""
TOOLS = {
    f"{upstream}.{tool}" for upstream in ("web", "narrow") for tool in ("whoami", "echo", "sleep")
} | {"vault.whoami", "safe.whoami"}


# --------------------------------------------------------------------------- fixtures


@dataclass
class Web:
    """``header_upstream.py`` serving streamable HTTP, and what each request to it carried."""

    url: str
    log: Path

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def calls(self) -> list[dict[str, Any]]:
        return [r for r in self.requests() if r["rpc"] == "tools/call"]


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    port = free_port()
    log = tmp_path / "web-requests.log"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "header_upstream.py"), str(port), str(log)],
        env={"PYTHONPATH": str(SRC), "PATH": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the HTTP upstream did not start") from None
                time.sleep(0.1)
        log.unlink(missing_ok=True)  # the probe above is not a test's request
        yield Web(f"http://127.0.0.1:{port}/mcp", log)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


Configure = Callable[[str], Home]


@pytest.fixture
def lender(tmp_path: Path) -> Iterator[Configure]:
    """A home with credential sources and the secret `web-key`; the returned function writes a
    gateway configuration and gives the ``Home`` for it."""
    path = tmp_path / "home"
    init_home(path)
    config = path / "tribune.toml"
    config.write_text(config.read_text() + CREDENTIALS)
    tr = open_tribune(path)
    _populate(tr)
    tr.registry.register_agent(
        "lender",
        owner="user:alice",
        purpose="borrows credentials",
        environment="development",
        entitlements=Entitlements(tools=frozenset(TOOLS)),
    )
    tr.secrets.put("web-key", SECRET)

    def configure(text: str) -> Home:
        gateway = tmp_path / "gateway.toml"
        gateway.write_text(text)
        return Home(tr, path, gateway, tmp_path / "calls.log")

    yield configure
    tr.close()


def web_toml(url: str, credential: str = "web-key", **extra: str) -> str:
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    return (
        f'[[gateway.upstreams]]\nname = "web"\nurl = "{url}"\ncredential = "{credential}"\n'
        f"timeout = 5\n{lines}"
    )


def vault_toml(name: str = "vault", **extra: Any) -> str:
    """``env_upstream.py`` lent `vault-token` in `VAULT_TOKEN`; ``extra`` keys replace those (a
    None removes one)."""
    keys = {"credential": "vault-token", "credential_env": "VAULT_TOKEN", "timeout": 10, **extra}
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items() if v is not None)
    return f"""
[[gateway.upstreams]]
name = "{name}"
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(HERE / "env_upstream.py"))}]
env = {{ PYTHONPATH = {json.dumps(str(SRC))} }}
{lines}"""


@contextmanager
def http_gateway(home: Home) -> Iterator[tuple[Gateway, str]]:
    """The gateway over HTTP in this process (uvicorn on a thread): (gateway, its URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    gw, app = create_gateway_app(home.tr, replace(home.settings, url=url))
    with served(app, port):
        yield gw, url


async def until(check: Callable[[], Any], seconds: float = 15) -> Any:
    with anyio.fail_after(seconds):
        while not (found := check()):
            await anyio.sleep(0.1)
    return found


def leases(home: Home, task_id: str) -> list[Any]:
    return sorted(home.tr.leases.list(task_id), key=lambda lease: lease.issued_at)


def nowhere_in_the_store(home: Home, text: str) -> None:
    assert all(text not in record.body for record in home.tr.store.records())


def downstream(home: Home, token: str, audience: str) -> dict[str, Any]:
    """Verify a lent token as the upstream would: Tribune's JWKS, its own audience."""
    jwks = jwt.PyJWKSet.from_dict(home.tr.token_keys.jwks())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=["EdDSA"], audience=audience)
    return claims


# --------------------------------------------------------------------------- configuration


def upstream(text: str) -> Any:
    return parse_gateway(tomllib.loads(text)).upstreams[0]


def test_credential_settings_are_parsed_with_their_defaults() -> None:
    http = upstream(web_toml("https://web.test/mcp"))
    assert (http.credential, http.header, http.format) == (
        "web-key",
        "Authorization",
        "Bearer {credential}",
    )
    custom = upstream(web_toml("https://web.test/mcp", header="X-Api-Key", format="{credential}"))
    assert (custom.header, custom.format) == ("X-Api-Key", "{credential}")
    stdio = upstream(vault_toml(max_processes=2, idle_timeout=5))
    assert (stdio.credential, stdio.credential_env) == ("vault-token", "VAULT_TOKEN")
    assert (stdio.max_processes, stdio.idle_timeout) == (2, 5.0)
    plain = upstream('[[gateway.upstreams]]\nname = "p"\ncommand = "x"\n')
    assert plain.credential is None and plain.credential_env is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (web_toml("https://w/mcp", header="Mcp-Session-Id"), "set by the MCP client"),
        (web_toml("https://w/mcp", header="mcp-protocol-version"), "set by the MCP client"),
        (web_toml("https://w/mcp", header="Host"), "set by the MCP client"),
        (web_toml("https://w/mcp", header="Content-Type"), "set by the MCP client"),
        (web_toml("https://w/mcp", header="Content-Length"), "set by the MCP client"),
        (web_toml("https://w/mcp", header="X Api"), "must be an HTTP header name"),
        (web_toml("https://w/mcp", format="Bearer"), "must contain `{credential}` once"),
        (web_toml("https://w/mcp", format="{credential}{credential}"), "once"),
        (web_toml("https://w/mcp", format="Bearer {credential}\r\nX: y"), "printable ASCII"),
        (web_toml("https://w/mcp", credential_env="TOKEN"), "applies to a `command` only"),
        (web_toml("https://w/mcp", max_processes=3), "applies to a `command` only"),
        (web_toml("https://w/mcp", credential="not a name!"), "credential"),
        (
            '[[gateway.upstreams]]\nname = "w"\nurl = "https://w/mcp"\nheader = "X-Key"\n',
            "needs a `credential`",
        ),
        (vault_toml(header="X-Key"), "applies to a `url` only"),
        (vault_toml(credential_env=None), "needs `credential_env`"),
        (vault_toml(credential_env="1BAD"), "environment variable name"),
        (vault_toml(credential_env="PYTHONPATH"), "also set in"),
        (vault_toml(max_processes=0), "max_processes"),
        (vault_toml(max_processes=True), "max_processes"),
        (vault_toml(idle_timeout=0), "idle_timeout"),
        (
            '[[gateway.upstreams]]\nname = "p"\ncommand = "x"\ncredential_env = "T"\n',
            "needs a `credential`",
        ),
    ],
)
def test_bad_credential_settings_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_gateway(tomllib.loads(text))
    assert message in caught.value.message


async def _identify(_: Any) -> None:
    return None


def test_a_credential_source_must_exist_and_serve_the_upstream(lender: Configure) -> None:
    home = lender(web_toml("https://web.test/mcp", credential="nothing-here"))
    with pytest.raises(ConfigError, match="no credential source `nothing-here`"):
        Gateway(home.tr, home.settings, _identify)
    home = lender(web_toml("https://web.test/mcp", credential="vault-token"))
    with pytest.raises(ConfigError, match="serves no tool of `web`"):
        Gateway(home.tr, home.settings, _identify)
    Gateway(home.tr, lender(web_toml("https://web.test/mcp")).settings, _identify)


def test_the_gateway_does_not_start_with_an_unknown_source(lender: Configure) -> None:
    home = lender(web_toml("https://web.test/mcp", credential="nothing-here"))
    _, token = home.task("lender", tools=["web.whoami"])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tribune.gateway",
            "--home",
            str(home.path),
            "--config",
            str(home.config),
        ],
        env={
            "PYTHONPATH": str(SRC),
            "PATH": os.environ.get("PATH", ""),
            "TRIBUNE_TASK_TOKEN": token,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no credential source `nothing-here`" in done.stderr


# --------------------------------------------------------------------------- HTTP upstreams


@pytest.mark.parametrize("mode", ERAS)
def test_a_secret_reaches_the_header_of_its_call_and_nothing_else(
    lender: Configure, web: Web, mode: str
) -> None:
    home = lender(web_toml(web.url))
    task_id, token = home.task("lender", tools=["web.whoami", "web.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, mode) as client:
            listed = await client.list_tools()
            assert {t.name for t in listed.tools} == {"web.whoami", "web.echo"}
            seen = await client.call_tool("web.whoami", {})
            assert text_of(seen) == f"Bearer {SECRET}"  # the upstream echoes it: its business
            echoed = await client.call_tool("web.echo", {"text": "hello"})
            assert text_of(echoed) == "hello"
            assert SECRET not in echoed.model_dump_json()

    anyio.run(body)
    requests = web.requests()
    calls = web.calls()
    assert len(calls) == 2
    assert all(r["headers"]["authorization"] == f"Bearer {SECRET}" for r in calls)
    others = [r for r in requests if r["rpc"] != "tools/call"]
    assert {r["rpc"] for r in others} >= {"tools/list"}
    assert all("authorization" not in r["headers"] for r in others)  # listings carry none
    assert all(token not in json.dumps(r) for r in requests)  # nor the agent's own token

    lent = leases(home, task_id)
    assert len(lent) == 2 and all(lease.state is LeaseState.REVOKED for lease in lent)
    assert all(lease.end_reason == "call_ended" for lease in lent)
    assert [r["status"] for r in home.results(task_id)] == ["ok", "ok"]
    assert {lease.action_id for lease in lent} == {a for _, a, _ in home.records(task_id) if a}
    nowhere_in_the_store(home, SECRET)


def test_each_call_gets_its_own_token_in_its_own_header(lender: Configure, web: Web) -> None:
    home = lender(web_toml(web.url, "web-token", header="X-Api-Key", format="Token {credential}"))
    task_id, token = home.task("lender", tools=["web.whoami"])
    seen: list[str] = []

    with http_gateway(home) as (_, url):

        async def body() -> None:
            async with http_client(url, token, "auto") as client:
                for _ in range(2):
                    result = await client.call_tool("web.whoami", {"header": "x-api-key"})
                    seen.append(text_of(result))
                # the agent's bearer token went to the gateway only
                plain = await client.call_tool("web.whoami", {})
                assert text_of(plain) == "-"

        anyio.run(body)

    assert all(value.startswith("Token ") for value in seen)
    first, second = (downstream(home, v.removeprefix("Token "), "https://web.test") for v in seen)
    lent = leases(home, task_id)
    assert [first["jti"], second["jti"]] == [lease.id for lease in lent[:2]]
    assert first["jti"] != second["jti"]
    assert first["authorization_details"][0]["call"]["action"] == lent[0].action_id
    assert second["authorization_details"][0]["call"]["tool"] == "web.whoami"
    assert all(lease.state is LeaseState.REVOKED for lease in lent)
    # revoked: introspection says so, whatever the token's own expiry
    for value in seen:
        answer = home.tr.introspection.introspect(value.removeprefix("Token "))
        assert answer["active"] is False
    assert all(token not in json.dumps(r) for r in web.requests())
    assert all("x-api-key" not in r["headers"] for r in web.requests() if r["rpc"] != "tools/call")


def test_concurrent_calls_of_two_tasks_each_carry_their_own_lease(
    lender: Configure, web: Web
) -> None:
    home = lender(web_toml(web.url, "web-token"))
    tasks = [home.task("lender", tools=["web.whoami"]) for _ in range(2)]
    seen: dict[str, list[str]] = {task_id: [] for task_id, _ in tasks}

    with http_gateway(home) as (_, url):

        async def calls(task_id: str, token: str) -> None:
            async with http_client(url, token, "auto") as client:

                async def one() -> None:
                    seen[task_id].append(text_of(await client.call_tool("web.whoami", {})))

                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(one)

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                for task_id, token in tasks:
                    tg.start_soon(calls, task_id, token)

        anyio.run(body)

    for task_id, values in seen.items():
        claims = [downstream(home, v.removeprefix("Bearer "), "https://web.test") for v in values]
        assert len(claims) == 4 and {c["task"] for c in claims} == {task_id}
        assert {c["jti"] for c in claims} == {lease.id for lease in leases(home, task_id)}
        assert len({c["authorization_details"][0]["call"]["action"] for c in claims}) == 4


def test_a_denied_call_borrows_nothing(lender: Configure, web: Web) -> None:
    home = lender(web_toml(web.url))
    task_id, token = home.task("lender", tools=["web.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            denied = await client.call_tool("web.whoami", {})
            assert denied.is_error

    anyio.run(body)
    assert [d["effect"] for d in home.decisions(task_id)] == ["deny"]
    assert leases(home, task_id) == []
    assert web.calls() == []


def test_a_credential_that_cannot_be_had_fails_closed(lender: Configure, web: Web) -> None:
    narrow = web_toml(web.url, "narrow-key").replace('name = "web"', 'name = "narrow"')
    home = lender(web_toml(web.url) + "\n" + narrow)
    task_id, token = home.task("lender", tools=["web.whoami", "narrow.whoami"])

    with http_gateway(home) as (_, url):

        async def body() -> None:
            async with http_client(url, token, "auto") as client:
                # the source does not serve this tool: no lease for the call
                out_of_scope = await client.call_tool("narrow.whoami", {})
                assert out_of_scope.is_error
                assert "no credential could be lent" in text_of(out_of_scope)
                # the secret is gone from the store
                home.tr.secrets.delete("web-key")
                gone = await client.call_tool("web.whoami", {})
                assert gone.is_error and "no credential could be lent" in text_of(gone)
                assert SECRET not in text_of(gone)

        anyio.run(body)

    assert web.calls() == []  # nothing was forwarded
    results = home.results(task_id)
    assert [(r["status"], r["error"]) for r in results] == [("error", "credential_unavailable")] * 2
    assert all(lease.state is LeaseState.REVOKED for lease in leases(home, task_id))
    nowhere_in_the_store(home, SECRET)


def test_a_cancelled_call_gives_its_lease_back(lender: Configure, web: Web) -> None:
    home = lender(web_toml(web.url))
    task_id, token = home.task("lender", tools=["web.sleep"])

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            with anyio.move_on_after(1.5):
                await client.call_tool("web.sleep", {"seconds": 30})
                pytest.fail("the call should have been cancelled")
            await until(lambda: home.results(task_id))

    anyio.run(body)
    assert [r["status"] for r in home.results(task_id)] == ["cancelled"]
    (lease,) = leases(home, task_id)
    assert lease.state is LeaseState.REVOKED and lease.end_reason == "call_ended"


# --------------------------------------------------------------------------- stdio upstreams


def whoami(result: Any) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    found: dict[str, Any] = json.loads(text_of(result))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_each_task_gets_its_own_process_with_its_own_lease(lender: Configure) -> None:
    home = lender(vault_toml())
    first_task, first_token = home.task("lender", tools=["vault.whoami"])
    second_task, second_token = home.task("lender", tools=["vault.whoami"])

    with http_gateway(home) as (gw, url):
        processes = gw.upstreams.processes["vault"]

        async def body() -> None:
            async with (
                http_client(url, first_token, "auto") as first,
                http_client(url, second_token, "legacy") as second,
            ):
                a1 = whoami(await first.call_tool("vault.whoami", {}))
                b1 = whoami(await second.call_tool("vault.whoami", {}))
                a2 = whoami(await first.call_tool("vault.whoami", {}))
                assert a1 == a2  # the task's process is reused
                assert a1["set"] and b1["set"] and not a1["leaked"] and not b1["leaked"]
                assert a1["pid"] != b1["pid"] and a1["sha256"] != b1["sha256"]
                assert a1["claims"]["task"] == first_task and b1["claims"]["task"] == second_task
                assert a1["claims"]["aud"] == "https://vault.test"
                (a_lease,) = home.tr.leases.list(first_task, active_only=True)
                (b_lease,) = home.tr.leases.list(second_task, active_only=True)
                assert (a1["claims"]["lease"], b1["claims"]["lease"]) == (a_lease.id, b_lease.id)
                assert a_lease.action_id is None  # a lease for the task, not for one call
                assert processes.count() == 2

                home.tr.tasks.end(first_task)  # its lease is revoked, then its process closes
                await until(lambda: processes.count() == 1)
                await until(lambda: not alive(a1["pid"]))
                with pytest.raises(MCPError):  # the task is over: its token died with it
                    await first.call_tool("vault.whoami", {})
                assert processes.count() == 1
                b2 = whoami(await second.call_tool("vault.whoami", {}))
                assert b2 == b1

        anyio.run(body)
    assert processes.count() == 0  # the gateway stopped: every process closed
    (a_lease,) = leases(home, first_task)
    assert a_lease.state is LeaseState.REVOKED and a_lease.end_reason == "task_ended"
    (b_lease,) = leases(home, second_task)
    assert b_lease.state is LeaseState.REVOKED and b_lease.end_reason == "process_closed"


def test_processes_are_bounded_and_close_when_idle(lender: Configure) -> None:
    home = lender(vault_toml(max_processes=1, idle_timeout=1))
    first_task, first_token = home.task("lender", tools=["vault.whoami"])
    second_task, second_token = home.task("lender", tools=["vault.whoami"])

    with http_gateway(home) as (gw, url):
        processes = gw.upstreams.processes["vault"]

        async def body() -> None:
            async with (
                http_client(url, first_token, "auto") as first,
                http_client(url, second_token, "auto") as second,
            ):
                a = whoami(await first.call_tool("vault.whoami", {}))
                busy = await second.call_tool("vault.whoami", {})
                assert busy.is_error and "at most 1 task" in text_of(busy)
                await until(lambda: processes.count() == 0)  # idle for a second: closed
                assert not alive(a["pid"])
                b = whoami(await second.call_tool("vault.whoami", {}))
                assert b["claims"]["task"] == second_task

        anyio.run(body)

    (a_lease,) = leases(home, first_task)
    assert a_lease.state is LeaseState.REVOKED and a_lease.end_reason == "process_closed"
    statuses = [(r["status"], r.get("error")) for r in home.results(second_task)]
    assert statuses == [("error", "upstream_busy"), ("ok", None)]


def test_a_process_lives_on_renewals_and_is_replaced_when_they_bring_a_new_value(
    lender: Configure,
) -> None:
    home = lender(vault_toml(credential="vault-brief") + vault_toml("safe", credential="safe-key"))
    task_id, token = home.task("lender", tools=["vault.whoami", "safe.whoami"])

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            vault = whoami(await client.call_tool("vault.whoami", {}))
            safe = whoami(await client.call_tool("safe.whoami", {}))
            assert safe["sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()
            await anyio.sleep(3.5)  # past both leases' first TTL
            # a renewed token is a new token: the process that has the old one was replaced
            again = whoami(await client.call_tool("vault.whoami", {}))
            assert again["pid"] != vault["pid"]
            assert again["claims"]["lease"] != vault["claims"]["lease"]
            # a renewed secret is the same secret: the process lives on
            assert whoami(await client.call_tool("safe.whoami", {})) == safe
            (live,) = [
                lease
                for lease in home.tr.leases.list(task_id, active_only=True)
                if lease.id != again["claims"]["lease"]
            ]
            assert live.scope["source"] == "safe-key" and live.renewals >= 1

    anyio.run(body)
    lent = leases(home, task_id)
    assert len(lent) == 3 and all(lease.state is LeaseState.REVOKED for lease in lent)
    assert all(lease.end_reason == "process_closed" for lease in lent)


def test_a_stdio_gateway_lends_to_its_task_process_and_takes_it_back(lender: Configure) -> None:
    home = lender(vault_toml())
    task_id, token = home.task("lender", tools=["vault.whoami"])

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            seen = whoami(await client.call_tool("vault.whoami", {}))
            assert seen["set"] and seen["claims"]["task"] == task_id and not seen["leaked"]

    anyio.run(body)
    (lease,) = leases(home, task_id)  # the gateway exited: its process closed, lease revoked
    assert lease.state is LeaseState.REVOKED and lease.end_reason == "process_closed"


def test_a_task_that_may_not_borrow_gets_no_process(lender: Configure) -> None:
    home = lender(vault_toml())
    home.tr.registry.register_agent(
        "opener",
        owner="user:alice",
        purpose="open-scope tasks",
        environment="development",
        entitlements=Entitlements(tools=frozenset({"vault.whoami"}), open_scope=True),
    )
    # an open-scope task declares no tool the source serves: no lease for it, so no process
    task_id, token = home.task("opener", open_scope=True)

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            refused = await client.call_tool("vault.whoami", {})
            assert refused.is_error and "no credential could be lent" in text_of(refused)

    anyio.run(body)
    assert [d["effect"] for d in home.decisions(task_id)] == ["allow"]
    assert [(r["status"], r["error"]) for r in home.results(task_id)] == [
        ("error", "credential_unavailable")
    ]
    assert leases(home, task_id) == []
