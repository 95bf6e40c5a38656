"""Normalisers for the typed values tool arguments carry: e-mail addresses, people, hosts, URLs,
bank accounts, amounts, counts and object ids. Pure.

Each normaliser returns the one canonical form of a value or raises ``Invalid`` with a reason
that NEVER contains the value (arguments may hold secrets). Callers wrap ``Invalid`` into the
error their layer needs (``ExtractionFailed`` for arguments, ``InvalidInput`` for declared
targets). The same functions normalise arguments, a task's declared targets and the directory,
so that equal things compare equal.

Canonical forms:

- e-mail: ``local@domain``, both lowercased, the domain in its ASCII (IDNA) form. Local parts are
  lowercased on purpose: mail providers treat them case-insensitively in practice, and keeping
  case would let ``Alice@`` escape a directory entry written ``alice@``. Plus tags are kept.
- host: lowercase ASCII; IDNA (UTS #46) applied, one trailing dot dropped; IP literals in
  ``ipaddress`` form, IPv4-mapped IPv6 as IPv4, and the WHATWG IPv4 spellings browsers accept
  (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) as dotted quads.
- account: an IBAN in compact uppercase, validated; any other id uppercase, spaces and dashes
  removed, ASCII letters, digits, ``_`` and ``/`` only (never ``.``, ``:`` or ``@``, so an
  account can never equal a host or an e-mail address).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import idna
from email_validator import EmailNotValidError, validate_email
from schwifty import IBAN
from schwifty.registry import get_iban_spec

MAX_LONG = 2**63 - 1  # Cedar's Long


class Invalid(ValueError):
    """A value is not of the expected type. The message is a reason without the value."""


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("expected text")
    return value


def _has_control_or_space(text: str) -> bool:
    return any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


# --------------------------------------------------------------------------- e-mail and people

# "Display Name <addr>" or "\"Quoted, Name\" <addr>"; the name is not part of the identity.
_NAME_ADDR = re.compile(r'^\s*(?:"[^"]*"|[^<>"]*?)\s*<([^<>]*)>\s*$')


def normalise_email(value: Any) -> str:
    """An RFC-valid address (also in ``Name <addr>`` form) as ``local@domain``, lowercased."""
    return _email(_text(value))


@functools.lru_cache(maxsize=8192)
def _email(text: str) -> str:
    # Pure and hot (every recipient of every call): cached; errors are not cached.
    match = _NAME_ADDR.match(text)
    addr = (match.group(1) if match else text).strip()
    if addr[:7].lower() == "mailto:":
        addr = addr[7:]
    try:
        valid = validate_email(addr, check_deliverability=False)
    except EmailNotValidError:
        raise Invalid("not a valid e-mail address") from None
    domain = normalise_host(valid.ascii_domain)
    return f"{valid.local_part.lower()}@{domain}"


def normalise_person(value: Any) -> str:
    """A person, ``{name, email}`` or ``Name <email>``: the identity is the normalised e-mail."""
    if isinstance(value, dict):
        email = value.get("email")
        if email is None:
            raise Invalid("a person needs an `email`")
        return normalise_email(email)
    return normalise_email(value)


# --------------------------------------------------------------------------- hosts and URLs

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_IPV4_LAST = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")


def _ipv4_part(part: str) -> int:
    """One part of a WHATWG IPv4 address: decimal, ``0x`` hex or leading-zero octal."""
    base = 10
    if part[:2] in ("0x", "0X"):
        part, base = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        part, base = part[1:], 8
    if part == "":
        return 0
    digits = {10: "0123456789", 16: "0123456789abcdefABCDEF", 8: "01234567"}[base]
    if not all(c in digits for c in part):
        raise Invalid("not a valid ipv4 address")
    return int(part, base)


def _whatwg_ipv4(host: str) -> str:
    """Parse ``host`` as browsers do when its last label is a number (WHATWG URL, IPv4 parser)."""
    parts = host.split(".")
    if len(parts) > 4 or any(p == "" for p in parts):
        raise Invalid("not a valid ipv4 address")
    numbers = [_ipv4_part(p) for p in parts]
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise Invalid("not a valid ipv4 address")
    address = numbers[-1] + sum(n * 256 ** (3 - i) for i, n in enumerate(numbers[:-1]))
    return str(ipaddress.IPv4Address(address))


def _ip(text: str) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise Invalid("not a valid ip address") from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            raise Invalid("ipv6 zone ids are not allowed")
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
    return str(ip)


def normalise_host(value: Any) -> str:
    """A bare hostname or IP address in canonical form (see the module docstring)."""
    return _host(_text(value))


@functools.lru_cache(maxsize=8192)
def _host(text: str) -> str:
    host = text.strip()
    if not host or _has_control_or_space(host):
        raise Invalid("not a valid host")
    if host.startswith("[") and host.endswith("]"):
        return _ip(host[1:-1])
    if "://" in host:
        raise Invalid("expected a host, got a url (a `url` extractor reads urls)")
    if ":" in host:  # only IPv6 literals carry colons; ports belong to URLs
        return _ip(host)
    if not host.isascii():
        try:
            host = idna.uts46_remap(host, std3_rules=False, transitional=False)
        except (idna.IDNAError, UnicodeError, ValueError):
            raise Invalid("not a valid host") from None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        raise Invalid("not a valid host")
    labels = host.split(".")
    if _IPV4_LAST.match(labels[-1]):
        return _whatwg_ipv4(host)
    result = ".".join(_label(label) for label in labels)
    if len(result) > 253:
        raise Invalid("not a valid host")
    return result


def _label(label: str) -> str:
    if not label.isascii():
        try:
            label = idna.alabel(label).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            raise Invalid("not a valid host") from None
    elif label.startswith("xn--"):
        try:
            idna.ulabel(label)  # INVARIANT: an A-label must decode; garbage punycode is refused
        except (idna.IDNAError, UnicodeError, ValueError):
            raise Invalid("not a valid host") from None
    if not _LABEL.match(label):
        raise Invalid("not a valid host")
    return label


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_AUTHORITY_END = re.compile(r"[/?#]")


def url_host(value: Any) -> str:
    """The normalised host an http(s) URL reaches.

    Refused, each a way to make one URL mean different hosts to different parsers or to reach
    something other than a web host: other schemes (``file:``, ``javascript:``, ``data:``...),
    a missing ``//host``, whitespace or control characters, a backslash or ``%`` in the
    authority. The userinfo (``user:pass@``) is dropped: the host is what follows the LAST ``@``,
    as in browsers, so ``https://intranet.example.com@evil.io/`` reaches ``evil.io``.
    """
    text = _text(value).strip()
    if _has_control_or_space(text):
        raise Invalid("a url must not contain whitespace or control characters")
    scheme = _SCHEME.match(text)
    if scheme is None:
        raise Invalid("not an absolute url")
    if scheme.group(1).lower() not in ("http", "https"):
        # INVARIANT: the scheme is not echoed; it is part of the value and may be anything
        raise Invalid("only http and https urls are allowed")
    rest = text[scheme.end() :]
    if not rest.startswith("//"):
        raise Invalid("an http(s) url needs `//` and a host")
    authority = _AUTHORITY_END.split(rest[2:], maxsplit=1)[0]
    if "\\" in authority:
        raise Invalid("a backslash in the host part is ambiguous")
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise Invalid("not a valid host")
        host, port = hostport[: close + 1], hostport[close + 1 :]
        if port and not port.startswith(":"):
            raise Invalid("not a valid host")
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise Invalid("not a valid port")
    if not host:
        raise Invalid("an http(s) url needs a host")
    if "%" in host:
        raise Invalid("percent-encoded hosts are ambiguous")
    return normalise_host(host)


# --------------------------------------------------------------------------- accounts

_ACCOUNT = re.compile(r"^[A-Z0-9][A-Z0-9_/]{0,63}$")
_IBAN_SHAPE = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_SPACES_DASHES = re.compile(r"[\s\-]")


def iban_length(country: str) -> int | None:
    """The IBAN length of ``country`` (two letters), or None when it does not use IBANs."""
    try:
        return int(get_iban_spec(country.upper()).iban_length)
    except Exception:  # schwifty raises various errors for unknown countries
        return None


def normalise_iban(value: Any) -> str:
    """An IBAN (spaces and dashes allowed) validated by checksum, in compact uppercase."""
    compact = _SPACES_DASHES.sub("", _text(value)).upper()
    if not compact.isascii():
        raise Invalid("not a valid iban")
    try:
        return str(IBAN(compact).compact)
    except Exception:  # INVARIANT: schwifty's messages contain the value; never pass them on
        raise Invalid("not a valid iban (checksum, length or format)") from None


def normalise_account(value: Any) -> str:
    """An account id: an IBAN when it is shaped like one of an IBAN country, else an id."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    compact = _SPACES_DASHES.sub("", _text(value)).upper()
    if _IBAN_SHAPE.match(compact) and iban_length(compact[:2]) is not None:
        return normalise_iban(compact)
    if not _ACCOUNT.match(compact):
        raise Invalid("not a valid account id")
    return compact


# --------------------------------------------------------------------------- numbers and ids

_CURRENCY = r"(?:[A-Za-z]{3}|[$€£¥])"
_AMOUNT = re.compile(
    rf"^(?:(?P<pre>{_CURRENCY})\s*)?"
    r"(?P<int>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.(?P<frac>[0-9]+))?"
    rf"(?:\s*(?P<post>{_CURRENCY}))?$"
)


def parse_amount(value: Any) -> int:
    """Minor units (cents) of an amount in major units with at most two decimals.

    Numbers (not booleans) or text such as ``12.50``, ``1,200.00``, ``EUR 12.50``, ``$12``,
    ``12.5 USD``. Negative amounts, more than two decimals, ``12,50`` (ambiguous) and values
    beyond Cedar's Long are refused.
    """
    if isinstance(value, bool):
        raise Invalid("expected an amount, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise Invalid("negative amounts are refused")
        return _bounded(value * 100)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid("not a finite amount")
        if value < 0:
            raise Invalid("negative amounts are refused")
        try:
            exact = Decimal(repr(value))
        except InvalidOperation:
            raise Invalid("not an amount") from None
        cents = exact * 100
        if cents != cents.to_integral_value():
            raise Invalid("an amount has at most two decimals")
        return _bounded(int(cents))
    text = _text(value).strip()
    if text.startswith(("-", "−", "(")):  # noqa: RUF001 - the minus sign is intended
        raise Invalid("negative amounts are refused")
    match = _AMOUNT.match(text)
    if match is None or (match.group("pre") and match.group("post")):
        raise Invalid("not an amount")
    frac = match.group("frac") or ""
    if len(frac) > 2:
        raise Invalid("an amount has at most two decimals")
    whole = int(match.group("int").replace(",", ""))
    return _bounded(whole * 100 + int(frac.ljust(2, "0")))


def _bounded(minor: int) -> int:
    if minor > MAX_LONG:
        raise Invalid("amount too large")
    return minor


_COUNT_TEXT = re.compile(r"^[0-9]{1,18}$")


def parse_count(value: Any) -> int:
    """Items affected: an int >= 0 (or its decimal text), or a list (its length)."""
    if isinstance(value, list | tuple):
        return len(value)
    if isinstance(value, bool):
        raise Invalid("expected a count, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise Invalid("a count is never negative")
        return _bounded(value)
    if isinstance(value, str) and _COUNT_TEXT.match(value.strip()):
        return int(value.strip())
    raise Invalid("expected a whole number or a list")


def normalise_object_id(value: Any) -> str:
    """An object id: text (stripped, 1-512 characters, no control characters) or an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = _text(value).strip()
    if not text or len(text) > 512 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise Invalid("not a valid object id")
    return text
