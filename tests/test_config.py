"""Settings: ``parse_settings`` reads every key of ``tribune.toml`` and refuses what it cannot use.

Each refusal is a ``ConfigError`` (code ``config_invalid``) whose message names the key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from tribune.bootstrap import CONFIG_TEMPLATE, init_home, open_tribune
from tribune.config import Settings, ToolOverride, parse_settings
from tribune.core.model import Directory, ExtractorSpec, RiskFacts, Tool
from tribune.core.targets import normalise_target
from tribune.errors import ConfigError

FULL = """
trust_domain = "corp.example"
environment = "production"

[store]
url = "postgresql+psycopg://tribune@db/tribune"
durability = "full"

[audit]
checkpoint_every = 50
group_commit = true

[tasks]
default_ttl = 600
max_ttl = 7200

[directory]
domains = ["Corp.Example"]
members = ["Alice@Corp.Example"]
accounts = ["DE89 3704 0044 0532 0130 00"]
hosts = ["https://Intranet.Corp.Example/wiki"]
counterparties = ["partner.example", "Sales@Vendor.Example"]

[tools."payments.pay"]
description = "pay an invoice"
groups = ["payments"]
destructive = true
open_world = false
sensitive_args = ["/card"]
data_classes = ["restricted"]
extractors = [
  { kind = "iban", pointer = "/to_account", role = "payee" },
  { kind = "amount", pointer = "/amount", aggregate = "sum", required = true },
  { kind = "secret", pointer = "/otp", literal = "otp" },
]
"""


def parse(text: str) -> Settings:
    return parse_settings(tomllib.loads(text))


def refused(text: str | dict[str, Any]) -> ConfigError:
    raw = tomllib.loads(text) if isinstance(text, str) else text
    with pytest.raises(ConfigError) as info:
        parse_settings(raw)
    assert info.value.code == "config_invalid"
    return info.value


# --------------------------------------------------------------------------- keys and defaults


def test_defaults() -> None:
    settings = parse_settings({})
    assert settings == Settings()
    assert settings.trust_domain == "tribune.local" and settings.environment == "development"
    assert settings.store_url == "" and settings.durability == "normal"
    assert settings.checkpoint_every == 1000 and settings.group_commit is False
    assert (settings.default_task_ttl, settings.max_task_ttl) == (3600, 86400)
    assert settings.directory == Directory() and settings.tools == {}


def test_the_shipped_template_parses_to_the_defaults() -> None:
    assert parse(CONFIG_TEMPLATE) == Settings()


def test_every_key() -> None:
    s = parse(FULL)
    assert s.trust_domain == "corp.example" and s.environment == "production"
    assert s.store_url == "postgresql+psycopg://tribune@db/tribune" and s.durability == "full"
    assert s.checkpoint_every == 50 and s.group_commit is True
    assert (s.default_task_ttl, s.max_task_ttl) == (600, 7200)
    assert s.directory == Directory(
        domains=frozenset({"corp.example"}),
        members=frozenset({"alice@corp.example"}),
        accounts=frozenset({"DE89370400440532013000"}),
        hosts=frozenset({"intranet.corp.example"}),
        counterparties=frozenset({"partner.example", "sales@vendor.example"}),
    )
    assert s.tools == {
        "payments.pay": ToolOverride(
            name="payments.pay",
            description="pay an invoice",
            risk={"destructive": True, "open_world": False},
            groups=("payments",),
            extractors=(
                ExtractorSpec("iban", "/to_account", role="payee"),
                ExtractorSpec("amount", "/amount", aggregate="sum", required=True),
                ExtractorSpec("secret", "/otp", literal="otp"),
            ),
            sensitive_args=("/card",),
            data_classes=("restricted",),
        )
    }


def test_extractor_target_defaults_by_kind_and_can_be_turned_off() -> None:
    s = parse(
        '[tools.t]\nextractors = [{kind = "email", pointer = "/to"},'
        '{kind = "text", pointer = "/body"},'
        '{kind = "url", pointer = "/link", target = false}]\n'
    )
    assert [e.is_target for e in s.tools["t"].extractors or ()] == [True, False, False]


def test_directory_entries_use_the_target_normaliser() -> None:
    entries = ["Bob@ACME.com", "url:https://WWW.Example.org:8443/p", "acct-77", "10.0.0.0/8"]
    s = parse_settings({"directory": {"counterparties": entries}})
    assert s.directory.counterparties == {normalise_target(e) for e in entries}
    assert s.directory.counterparties == {"bob@acme.com", "www.example.org", "ACCT77", "10.0.0.0/8"}


def test_a_custom_normaliser_is_used() -> None:
    s = parse_settings({"directory": {"hosts": ["A.example"]}}, lambda v: "n:" + v)
    assert s.directory.hosts == {"n:A.example"}


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("trust_domian = 'x.example'", "`trust_domian`"),
        ("[storage]\nurl = 'x'", "`storage`"),
        ("[store]\nurll = 'postgresql://db/x'", "`urll`"),
        ("[audit]\ncheckpoint = 5", "`checkpoint`"),
        ("[tasks]\ndefault_tll = 5", "`default_tll`"),
        ("[directory]\nmember = ['a@b.example']", "`member`"),
        ("[tools.t]\nread_olny = true", "`read_olny`"),
        ("[tools.t]\nextractors = [{kind = 'email', pointer = '/to', rol = 'x'}]", "`rol`"),
    ],
)
def test_unknown_keys_are_refused_by_name(text: str, names: str) -> None:
    assert names in refused(text).message


def test_dotted_tool_names_must_be_quoted() -> None:
    err = refused("[tools.payments.pay]\ndestructive = true")
    assert "`pay`" in err.message and err.hint and '"a.b"' in err.hint
    assert parse('[tools."payments.pay"]\ndestructive = true').tools["payments.pay"].risk == {
        "destructive": True
    }


@pytest.mark.parametrize(
    ("extractor", "names"),
    [
        ({"kind": "phone", "pointer": "/to"}, "kind"),
        ({"pointer": "/to"}, "kind"),
        ({"kind": "email"}, "pointer"),
        ({"kind": "email", "pointer": 5}, "pointer"),
        ({"kind": "email", "pointer": "to"}, "extractors[0]"),
        ({"kind": "email", "pointer": "/to/~2"}, "extractors[0]"),
        ({"kind": "amount", "pointer": "/a", "aggregate": "avg"}, "aggregate"),
        ({"kind": "email", "pointer": "/to", "aggregate": "sum"}, "sum"),
        ({"kind": "amount", "pointer": "/a", "aggregate": 1}, "aggregate"),
        ({"kind": "email", "pointer": "/to", "literal": "x"}, "literal"),
        ({"kind": "email", "pointer": "/to", "target": "false"}, "target"),
        ({"kind": "email", "pointer": "/to", "required": 1}, "required"),
        ({"kind": "email", "pointer": "/to", "role": 7}, "role"),
    ],
)
def test_bad_extractors_are_refused(extractor: dict[str, Any], names: str) -> None:
    err = refused({"tools": {"t": {"extractors": [extractor]}}})
    assert names in err.message and "tools.t" in err.message


@pytest.mark.parametrize("value", ["yes", 1, 0, "true", None, [True]])
def test_risk_overrides_must_be_booleans(value: Any) -> None:
    err = refused({"tools": {"t": {"destructive": value}}})
    assert "`tools.t.destructive`" in err.message


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"tools": {"t": {"groups": "payments"}}}, "tools.t.groups"),
        ({"tools": {"t": {"groups": [1]}}}, "tools.t.groups"),
        ({"tools": {"t": {"data_classes": "secret"}}}, "tools.t.data_classes"),
        ({"tools": {"t": {"sensitive_args": ["card"]}}}, "tools.t.sensitive_args"),
        ({"tools": {"t": {"sensitive_args": "/card"}}}, "tools.t.sensitive_args"),
        ({"tools": {"t": {"extractors": {"kind": "email", "pointer": "/to"}}}}, "extractors"),
        ({"tools": {"t": {"extractors": ["email"]}}}, "extractors[0]"),
        ({"tools": {"t": {"description": 5}}}, "tools.t.description"),
        ({"tools": {"t": "destructive"}}, "tools.t"),
        ({"tools": {"bad name": {}}}, "bad name"),
        ({"tools": ["t"]}, "tools"),
        ({"store": "sqlite"}, "store"),
        ({"store": {"url": 5}}, "store.url"),
        ({"store": {"durability": "fsync"}}, "store.durability"),
        ({"audit": {"checkpoint_every": 0}}, "audit.checkpoint_every"),
        ({"audit": {"checkpoint_every": True}}, "audit.checkpoint_every"),
        ({"audit": {"checkpoint_every": "10"}}, "audit.checkpoint_every"),
        ({"audit": {"group_commit": "yes"}}, "audit.group_commit"),
        ({"tasks": {"default_ttl": 0}}, "tasks.default_ttl"),
        ({"tasks": {"max_ttl": "a day"}}, "tasks.max_ttl"),
        ({"tasks": {"default_ttl": 7200, "max_ttl": 3600}}, "tasks.default_ttl"),
        ({"directory": ["a.example"]}, "directory"),
        ({"directory": {"domains": "acme.com"}}, "directory.domains"),
        ({"directory": {"members": ["not an address@"]}}, "directory entry"),
        ({"directory": {"hosts": ["http://"]}}, "directory entry"),
        ({"trust_domain": "Corp Example"}, "trust domain"),
        ({"trust_domain": 5}, "trust_domain"),
        ({"environment": "prod env"}, "environment"),
    ],
)
def test_malformed_values_are_refused(raw: dict[str, Any], names: str) -> None:
    assert names in refused(raw).message


# --------------------------------------------------------------------------- tool overrides


REGISTERED = Tool(
    "crm.read",
    description="read a customer",
    input_schema={"type": "object"},
    risk=RiskFacts(read_only=True, destructive=False, idempotent=True, open_world=False),
    groups=("crm",),
    extractors=(ExtractorSpec("object_id", "/customer_id"),),
    sensitive_args=("/ssn",),
    data_classes=("confidential",),
)


def test_an_empty_override_keeps_every_registered_value() -> None:
    assert ToolOverride("crm.read").apply(REGISTERED) == REGISTERED


def test_an_override_replaces_only_what_it_names() -> None:
    tool = ToolOverride(
        "crm.read", risk={"destructive": True}, groups=(), sensitive_args=("/ssn", "/dob")
    ).apply(REGISTERED)
    assert tool.risk == RiskFacts(
        read_only=True, destructive=True, idempotent=True, open_world=False
    )
    assert tool.groups == ()  # an empty list is a value, not "unset"
    assert tool.sensitive_args == ("/ssn", "/dob")
    assert tool.extractors == REGISTERED.extractors
    assert tool.description == REGISTERED.description
    assert tool.data_classes == REGISTERED.data_classes
    assert tool.input_schema == REGISTERED.input_schema


def test_a_config_only_tool_is_a_complete_definition() -> None:
    s = parse('[tools."notes.read"]\nread_only = true\ndestructive = false\ngroups = ["notes"]\n')
    tool = s.tools["notes.read"].apply(None)
    assert tool.name == "notes.read" and tool.groups == ("notes",)
    # unnamed risk facts take MCP's cautious defaults
    assert tool.risk == RiskFacts(read_only=True, destructive=False)
    assert tool.risk.open_world is True and tool.extractors == ()


# --------------------------------------------------------------------------- reading the file


def test_invalid_toml_in_a_home_is_config_invalid(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home)
    (home / "tribune.toml").write_text('trust_domain = "unterminated\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        open_tribune(home)
    assert info.value.code == "config_invalid"
    assert "tribune.toml" in info.value.message and "TOML" in info.value.message


def test_an_unknown_key_in_a_home_is_config_invalid(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home)
    with (home / "tribune.toml").open("a", encoding="utf-8") as f:
        f.write('\n[tools."crm.read"]\nread_onyl = true\n')
    with pytest.raises(ConfigError) as info:
        open_tribune(home)
    assert "`read_onyl`" in info.value.message
