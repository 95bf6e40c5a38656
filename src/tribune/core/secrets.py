"""Detectors for credential-like strings in text. Pure.

One table, ``DETECTORS``: each row names a kind and a pattern. Specific formats come first; the
generic ``key = value`` and ``Bearer`` rows come last and also require the value to look random
(long, letters and digits, high entropy), so prose, UUIDs and git SHAs on their own never count.
``find_secrets`` returns (kind, value) pairs; values stay inside the process: callers report
kinds only and compare values by digest.

Every pattern starts with a literal or a look-behind boundary and has no nested unbounded
repetition, so scanning stays linear in the length of the text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of credential. With a ``secret`` group, that group is the value."""

    kind: str
    pattern: re.Pattern[str]
    random_value: bool = False  # the value must pass ``looks_random``


_KEYWORDS = (
    r"api[_-]?key|apikey|access[_-]?key(?:[_-]?id)?|secret[_-]?access[_-]?key|access[_-]?token"
    r"|auth[_-]?token|refresh[_-]?token|private[_-]?token|secret[_-]?key|client[_-]?secret"
    r"|token|secret|password|passwd|pwd"
)

_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")

DETECTORS: tuple[Detector, ...] = (
    Detector("private_key", _PEM_BEGIN),  # the value is the whole block, see _private_keys
    Detector(
        "aws_access_key",
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ),
    Detector(
        "github_token",
        re.compile(
            r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,244})"
            r"(?![A-Za-z0-9_])"
        ),
    ),
    Detector("slack_token", re.compile(r"(?<![A-Za-z0-9])xox[abeprs]-[A-Za-z0-9-]{10,250}")),
    Detector(
        "slack_webhook",
        re.compile(
            r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,}"
        ),
    ),
    Detector(
        "stripe_key",
        re.compile(r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}(?![A-Za-z0-9])"),
    ),
    Detector(
        "google_api_key",
        re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
    ),
    Detector(
        "jwt",
        re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{6,}\.ey[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"),
    ),
    Detector(
        "bearer_token",
        re.compile(r"(?i)(?<![A-Za-z0-9])bearer[ \t]+(?P<secret>[A-Za-z0-9._~+/-]{16,512}=*)"),
        random_value=True,
    ),
    Detector(
        "generic_api_key",
        re.compile(
            rf"(?i)(?<![A-Za-z0-9])(?:{_KEYWORDS})(?![A-Za-z0-9])[\"']?[ \t]*[:=][ \t]*[\"']?"
            r"(?P<secret>[A-Za-z0-9_\-+/=.~!@#$%^&*]{16,512})"
        ),
        random_value=True,
    ),
)


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``."""
    if not text:
        return 0.0
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in Counter(text).values())


def looks_random(value: str) -> bool:
    """A value that reads like a generated credential: 16+ characters with letters and digits
    and at least 3 bits of entropy per character."""
    return (
        len(value) >= 16
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and shannon_entropy(value) >= 3.0
    )


# Every detector's match contains one of these words (compared in lower case) and is at least
# MIN_SECRET_LENGTH long, so a few substring searches rule out most text before the table
# runs. Every keyword of _KEYWORDS contains "key", "token", "secret", "passw" or "pwd".
_TRIGGER_WORDS = (
    "-----begin",
    "akia",
    "asia",
    "abia",
    "acca",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "hooks.slack",
    "_live_",
    "_test_",
    "aiza",
    "eyj",
    "bearer",
    "key",
    "token",
    "secret",
    "passw",
    "pwd",
)
MIN_SECRET_LENGTH = 15  # `xoxb-` and ten characters


def might_hold_secret(text: str) -> bool:
    """False when ``text`` certainly holds no credential any detector finds (a cheap screen)."""
    if len(text) < MIN_SECRET_LENGTH:
        return False
    low = text.lower()
    return any(word in low for word in _TRIGGER_WORDS)


def find_secrets(text: str) -> list[tuple[str, str]]:
    """Credential-like strings in ``text`` as (kind, value), in table order then text order.

    A value found by several detectors is reported once, by the first (most specific) one.
    """
    if not might_hold_secret(text):
        return []
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for detector in DETECTORS:
        if detector.kind == "private_key":
            values = _private_keys(text)
        else:
            values = []
            for match in detector.pattern.finditer(text):
                value = match.group("secret") if "secret" in match.re.groupindex else match[0]
                if detector.random_value and not looks_random(value):
                    continue
                values.append(value)
        for value in values:
            if value not in seen:
                seen.add(value)
                found.append((detector.kind, value))
    return found


def _private_keys(text: str) -> list[str]:
    """PEM private key blocks: from each BEGIN line to its END line (or to the next BEGIN, or
    the end of the text, when the block is truncated). Linear: each END search stops at the
    next BEGIN."""
    starts = [m.start() for m in _PEM_BEGIN.finditer(text)]
    blocks = []
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else len(text)
        end = _PEM_END.search(text, start, stop)
        blocks.append(text[start : end.end() if end else stop].strip())
    return blocks
