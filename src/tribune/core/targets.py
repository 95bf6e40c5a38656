"""Classify targets against the directory and the task's declared intent. Pure.

Precedence INTERNAL > NAMED > KNOWN > UNKNOWN:

- email: internal when the address is a member or its domain (or a parent domain) is an
  organisation domain; named when the address or its domain (or a parent) is a named target;
  known when the address or its domain (or a parent) is a counterparty, or the address or its
  exact domain was learned.
- host: internal when it is an own host, or a subdomain of an organisation domain or own host;
  named / known likewise against named targets / counterparties; learned hosts match exactly.
  IP hosts match exactly, or by network when an entry is a CIDR block (``10.0.0.0/8``).
- account: exact match (own accounts internal, named, counterparty or learned known).
- object: named or learned (``object:<id>``), never internal.

INVARIANT: domain matching is by whole labels: ``evil-example.com`` and ``example.com.evil.io``
are not under ``example.com``. Learned targets are single observed values and never cover
subdomains (having once fetched ``s3.amazonaws.com`` must not make every bucket known).

Named targets, directory entries and learned targets must be in the form ``normalise_target``
(the same normalisers as ``core.extract``) gives.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from tribune.core.extract import OBJECT_PREFIX, Target
from tribune.core.model import Directory, TargetClass
from tribune.core.normalise import (
    Invalid,
    iban_length,
    normalise_account,
    normalise_email,
    normalise_host,
    normalise_iban,
    normalise_object_id,
    url_host,
)
from tribune.errors import InvalidInput

_PREFIXED = re.compile(r"^(email|mailto|host|url|account|iban|object):(.*)$", re.DOTALL)
_IBAN_LIKE = re.compile(r"^[A-Za-z]{2}[0-9]{2}[A-Za-z0-9 -]{11,40}$")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalise_target(text: str) -> str:
    """The canonical form of a declared target or directory entry.

    Recognised, in order: an explicit ``kind:`` prefix (``email:``, ``host:``, ``url:``,
    ``account:``, ``iban:``, ``object:``; also ``mailto:``); a URL (its host); an e-mail address
    (contains ``@``); an IP network (``10.0.0.0/8``); an IBAN; a host (has a dot, or is an IP
    literal); otherwise an account id. Object ids must be written ``object:<id>``.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("a target must be non-empty text")
    value = text.strip()
    try:
        return _normalise(value)
    except Invalid as exc:
        raise InvalidInput(f"invalid target `{value}`: {exc}") from None


def _normalise(value: str) -> str:
    prefixed = _PREFIXED.match(value)
    if prefixed is not None:
        kind, rest = prefixed.group(1), prefixed.group(2)
        if kind == "object":
            return OBJECT_PREFIX + normalise_object_id(rest)
        return {
            "email": normalise_email,
            "mailto": normalise_email,
            "host": normalise_host,
            "url": url_host,
            "account": normalise_account,
            "iban": normalise_iban,
        }[kind](rest)
    if "://" in value:
        return url_host(value)
    if "@" in value:
        return normalise_email(value)
    if "/" in value:
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise Invalid("not an ip network") from None
    if _IBAN_LIKE.match(value) and iban_length(value[:2]) is not None:
        return normalise_iban(value)
    if "." in value or ":" in value or value.startswith("[") or not value.isascii():
        return normalise_host(value)
    return normalise_account(value)


def normalise_directory(directory: Directory) -> Directory:
    """``directory`` with every entry normalised; raises ``InvalidInput`` for a bad entry."""
    return Directory(
        domains=frozenset(normalise_target(d) for d in directory.domains),
        members=frozenset(normalise_target(m) for m in directory.members),
        accounts=frozenset(normalise_target(a) for a in directory.accounts),
        hosts=frozenset(normalise_target(h) for h in directory.hosts),
        counterparties=frozenset(normalise_target(c) for c in directory.counterparties),
    )


# --------------------------------------------------------------------------- matching


def _parents(domain: str) -> list[str]:
    """``a.b.example.com`` -> itself, ``b.example.com``, ``example.com``, ``com``."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@lru_cache(maxsize=256)
def _networks(entries: frozenset[str]) -> tuple[IpNetwork, ...]:
    """The CIDR entries of a set (cached per set: directories and scopes are reused)."""
    out: list[IpNetwork] = []
    for entry in entries:
        if "/" in entry:
            try:
                out.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue
    return tuple(out)


def _host_under(host: str, *entry_sets: frozenset[str]) -> bool:
    """``host`` equals, or is under (by whole labels), an entry of any set; IPs match exactly
    or by network."""
    ip = _ip(host)
    if ip is not None:
        return any(
            host in entries or any(ip in net for net in _networks(entries))
            for entries in entry_sets
        )
    parents = _parents(host)
    return any(p in entries for entries in entry_sets for p in parents)


@lru_cache(maxsize=8192)
def classify(
    target: Target, directory: Directory, named: frozenset[str], learned: frozenset[str]
) -> TargetClass:
    """The class of ``target``: INTERNAL > NAMED > KNOWN > UNKNOWN (see the module docstring).

    Pure, so cached: the same recipient is classified once per directory, intent and set of
    learned targets (frozensets keep their hash, so a lookup costs little).
    """
    value = target.value
    if target.kind == "email":
        domain = value.rpartition("@")[2]
        if value in directory.members or _host_under(domain, directory.domains):
            return TargetClass.INTERNAL
        if value in named or _host_under(domain, named):
            return TargetClass.NAMED
        if (
            value in directory.counterparties
            or _host_under(domain, directory.counterparties)
            or value in learned
            or domain in learned
        ):
            return TargetClass.KNOWN
        return TargetClass.UNKNOWN
    if target.kind == "host":
        if _host_under(value, directory.hosts, directory.domains):
            return TargetClass.INTERNAL
        if _host_under(value, named):
            return TargetClass.NAMED
        if _host_under(value, directory.counterparties) or value in learned:
            return TargetClass.KNOWN
        return TargetClass.UNKNOWN
    if target.kind == "account":
        if value in directory.accounts:
            return TargetClass.INTERNAL
        if value in named:
            return TargetClass.NAMED
        if value in directory.counterparties or value in learned:
            return TargetClass.KNOWN
        return TargetClass.UNKNOWN
    # objects, and any kind this module does not know: never internal
    if value in named:
        return TargetClass.NAMED
    if value in learned:
        return TargetClass.KNOWN
    return TargetClass.UNKNOWN


def target_facts(targets: Sequence[Target], classes: Sequence[TargetClass]) -> dict[str, Any]:
    """The schema's ``context.targets`` record for classified targets.

    ``all_trusted`` and ``all_internal`` are true when there are no targets.
    """
    if len(targets) != len(classes):
        raise InvalidInput("each target needs exactly one class")
    present = set(classes)
    return {
        "count": len(targets),
        "all_trusted": TargetClass.UNKNOWN not in present,
        "all_internal": present <= {TargetClass.INTERNAL},
        "any_unknown": TargetClass.UNKNOWN in present,
        "classes": sorted(c.value for c in present),
    }


def links_unknown(
    links: Iterable[str], directory: Directory, named: frozenset[str], learned: frozenset[str]
) -> bool:
    """True when a link's host classifies as UNKNOWN."""
    return any(
        classify(Target("host", host, "link"), directory, named, learned) is TargetClass.UNKNOWN
        for host in links
    )
