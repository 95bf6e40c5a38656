"""Parsing `[gateway]` and `[[gateway.upstreams]]`: what an admin may write, and clear errors."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from tribune.errors import ConfigError
from tribune.gateway import GatewaySettings, UpstreamSettings, parse_gateway
from tribune.gateway.config import DEFAULT_TIMEOUT, DEFAULT_URL


def parse(text: str) -> GatewaySettings:
    return parse_gateway(tomllib.loads(text))


def test_no_table_means_no_upstreams() -> None:
    assert parse_gateway({}) == GatewaySettings()
    assert parse_gateway({"store": {"url": "x"}}).upstreams == ()


def test_stdio_and_http_upstreams() -> None:
    settings = parse(
        """
        [gateway]
        url = "https://gw.example.com/mcp"
        issuer_url = "https://tribune.example.com"

        [[gateway.upstreams]]
        name = "time"
        command = "mcp-server-time"
        args = ["--local-timezone", "UTC"]
        env = { TZ = "UTC", API_KEY = "s3cret" }
        timeout = 2.5

        [[gateway.upstreams]]
        name = "search-v2"
        url = "https://search.internal/mcp"
        """
    )
    time, search = settings.upstreams
    assert time == UpstreamSettings(
        name="time",
        command="mcp-server-time",
        args=("--local-timezone", "UTC"),
        env={"TZ": "UTC", "API_KEY": "s3cret"},
        timeout=2.5,
    )
    assert time.transport == "stdio"
    assert "s3cret" not in repr(time)  # env may hold secrets: never in a repr or a log line
    assert search == UpstreamSettings(name="search-v2", url="https://search.internal/mcp")
    assert search.transport == "http" and search.timeout == DEFAULT_TIMEOUT
    assert settings.url == "https://gw.example.com/mcp"
    assert settings.issuer_url == "https://tribune.example.com"


def test_defaults() -> None:
    settings = parse('[[gateway.upstreams]]\nname = "a"\ncommand = "run-a"\n')
    assert settings.url == DEFAULT_URL
    assert settings.upstreams[0].args == () and settings.upstreams[0].env == {}
    assert settings.approval_hold == 0 and settings.elicit is True
    assert settings.upstreams[0].connect_timeout == 30.0


def test_connect_timeout_is_its_own() -> None:
    settings = parse(
        '[[gateway.upstreams]]\nname = "a"\nurl = "http://h/mcp"\ntimeout = 2\n'
        "connect_timeout = 90\n"
    )
    assert (settings.upstreams[0].timeout, settings.upstreams[0].connect_timeout) == (2.0, 90.0)


def test_approval_settings() -> None:
    settings = parse("[gateway]\napproval_hold = 30\nelicit = false\n")
    assert settings.approval_hold == 30.0 and settings.elicit is False


def upstream(**fields: Any) -> dict[str, Any]:
    return {"gateway": {"upstreams": [fields]}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"gateway": []}, "`gateway` must be a table"),
        ({"gateway": {"upstream": []}}, "unknown key `upstream` in `gateway`"),
        ({"gateway": {"upstreams": {}}}, "must be an array of tables"),
        ({"gateway": {"upstreams": ["x"]}}, "`gateway.upstreams[0]` must be a table"),
        (upstream(command="x"), "`gateway.upstreams[0].name` must be a string"),
        (upstream(name="a b", command="x"), "invalid upstream name `a b`"),
        (upstream(name="a.b", command="x"), "must not contain `.`"),
        (upstream(name="a"), "needs exactly one of `command` (stdio) or `url`"),
        (upstream(name="a", command="x", url="http://h/mcp"), "needs exactly one of"),
        (upstream(name="a", command=""), "`gateway.upstreams.a.command` must be a non-empty"),
        (upstream(name="a", command=["x"]), "`gateway.upstreams.a.command` must be a non-empty"),
        (upstream(name="a", command="x", args="y"), "`gateway.upstreams.a.args` must be a list"),
        (
            upstream(name="a", command="x", env={"K": 1}),
            "`gateway.upstreams.a.env` must be a table",
        ),
        (upstream(name="a", command="x", env={"A=B": "v"}), "must be a table of strings"),
        (upstream(name="a", url="ftp://h"), "`gateway.upstreams.a.url` must be an http(s) URL"),
        (upstream(name="a", url="http://h", args=["x"]), "apply to a `command` only"),
        (upstream(name="a", command="x", timeout=0), "must be more than 0"),
        (upstream(name="a", command="x", timeout=True), "must be a number of seconds"),
        (upstream(name="a", command="x", timeout=99999), "at most 3600 seconds"),
        (upstream(name="a", command="x", connect_timeout=0), "connect_timeout` must be more"),
        (upstream(name="a", command="x", cwd="/"), "unknown key `cwd` in `gateway.upstreams[0]`"),
        ({"gateway": {"url": "gw:8710"}}, "`gateway.url` must be an http(s) URL"),
        ({"gateway": {"approval_hold": -1}}, "`gateway.approval_hold` must be a number"),
        ({"gateway": {"approval_hold": 301}}, "from 0 to 300"),
        ({"gateway": {"approval_hold": True}}, "`gateway.approval_hold` must be a number"),
        ({"gateway": {"elicit": "yes"}}, "`gateway.elicit` must be true or false"),
    ],
)
def test_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_gateway(raw)
    assert message in caught.value.message


def test_upstream_names_are_unique() -> None:
    raw = {
        "gateway": {"upstreams": [{"name": "a", "command": "x"}, {"name": "a", "url": "http://h"}]}
    }
    with pytest.raises(ConfigError, match="two upstreams are named `a`"):
        parse_gateway(raw)
