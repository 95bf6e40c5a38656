"""What free text carries out: links, e-mail addresses, card numbers and IBANs. Pure.

Credential-like strings are found by ``core.secrets`` (over every string of the arguments, not
only free text). Everything returned here is normalised and de-duplicated in text order.

- links: hosts of ``http(s)://`` URLs and of bare ``www.`` hosts. An http(s) link whose host
  cannot be read (a backslash or ``%`` in the host, a bad port, ...) raises ``Invalid``: a link
  that parsers may read differently is treated as a failed extraction, not skipped.
- e-mail addresses: anything shaped ``x@y`` that ``email-validator`` accepts (others skipped);
  addresses inside http(s) URLs (userinfo, query) are not counted as recipients.
- cards: 13-19 digits (single spaces or dashes between them allowed), starting with 2-6 as the
  major networks do, passing the Luhn check; digits inside IBAN-shaped text do not count.
- IBANs: two letters, two digits and the country's length of alphanumerics (single spaces
  allowed), valid by checksum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tribune.core.normalise import (
    Invalid,
    iban_length,
    normalise_email,
    normalise_host,
    normalise_iban,
    url_host,
)


@dataclass(frozen=True, slots=True)
class TextFindings:
    links: tuple[str, ...]  # hosts
    emails: tuple[str, ...]
    cards: tuple[str, ...]  # digits only; never leave the process
    ibans: tuple[str, ...]


_URL = re.compile(r"(?i)(?<![A-Za-z0-9+.-])https?://[^\s<>\"'`]*")
_WWW = re.compile(r"(?i)(?<![A-Za-z0-9.@/_-])www\.[^\s/\\<>\"'`?#:@,;()\[\]{}|]+")
_STOP = r"\s<>()\[\]{},;:\"'`|\\/=?@"
_EMAIL = re.compile(rf"(?<![^{_STOP}])[^{_STOP}]+@[^{_STOP}]+")
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}")
_CARD = re.compile(r"(?<![0-9A-Za-z_])[2-6](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z_])")
_TRAILING = ".,;:!?)]}'\"*>"


def scan_text(text: str) -> TextFindings:
    """Links, e-mail addresses, card numbers and IBANs in ``text``."""
    links: dict[str, None] = {}
    url_spans: list[tuple[int, int]] = []
    for match in _URL.finditer(text):
        candidate = match[0].rstrip(_TRAILING)
        url_spans.append((match.start(), match.start() + len(candidate)))
        if candidate.split("://", 1)[1] == "":
            continue  # "http://" alone is a word about links, not a link
        links[url_host(candidate)] = None
    outside_urls = _mask(text, url_spans)

    emails: dict[str, None] = {}
    email_spans: list[tuple[int, int]] = []
    for match in _EMAIL.finditer(outside_urls):
        candidate = match[0].rstrip(_TRAILING)
        try:
            emails[normalise_email(candidate)] = None
        except Invalid:
            continue
        email_spans.append((match.start(), match.start() + len(candidate)))

    for match in _WWW.finditer(_mask(outside_urls, email_spans)):
        try:
            links[normalise_host(match[0].rstrip(_TRAILING))] = None
        except Invalid:
            continue  # "www.-" and the like: not a host, so not a link

    ibans, iban_spans = _ibans(text)
    cards: dict[str, None] = {}
    for match in _CARD.finditer(_mask(text, iban_spans)):
        digits = re.sub(r"[ -]", "", match[0])
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            cards[digits] = None
    return TextFindings(tuple(links), tuple(emails), tuple(cards), tuple(ibans))


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each span blanked out (same length, so positions stay valid)."""
    if not spans:
        return text
    parts = []
    last = 0
    for start, end in spans:
        parts.append(text[last:start])
        parts.append(" " * (end - start))
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _ibans(text: str) -> tuple[dict[str, None], list[tuple[int, int]]]:
    found: dict[str, None] = {}
    spans: list[tuple[int, int]] = []
    pos = 0
    while (match := _IBAN_START.search(text, pos)) is not None:
        end = _iban_end(text, match.start())
        if end is None:
            pos = match.start() + 1
            continue
        spans.append((match.start(), end))  # shaped like an IBAN: never a card number
        try:
            found[normalise_iban(text[match.start() : end])] = None
        except Invalid:
            pos = match.start() + 1
            continue
        pos = end
    return found, _merge(spans)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _iban_end(text: str, start: int) -> int | None:
    """Where an IBAN starting at ``start`` would end: the country's length of alphanumerics,
    single spaces allowed between them, followed by no further letter or digit."""
    length = iban_length(text[start : start + 2])
    if length is None:
        return None
    taken, i = 0, start
    while taken < length and i < len(text):
        char = text[i]
        if char.isascii() and char.isalnum():
            taken += 1
        elif not (char == " " and taken >= 2 and i + 1 < len(text) and text[i + 1] != " "):
            return None
        i += 1
    if taken < length or (i < len(text) and text[i].isascii() and text[i].isalnum()):
        return None
    return i


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0
