"""Session taint: when a task has observed content it cannot trust.

A task becomes tainted when a tool marked ``untrusted_output`` returns, or when a result
classifier flags the output. The built-in classifier is a heuristic for instruction-like text
(prompt injection markers); it adds to the per-tool marking, it does not replace it.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from tribune.core.model import Tool

_MARKERS = re.compile(
    r"ignore (all |any )?(the )?(previous|prior|above) (instructions|prompts?)"
    r"|disregard (all |the )?(previous|prior|above)"
    r"|you are now (in )?[a-z ]{0,20}mode"
    r"|new instructions\s*:"
    r"|system prompt"
    r"|<\s*/?\s*(system|instructions?)\s*>"
    r"|do not (tell|inform) the user",
    re.IGNORECASE,
)
_MAX_SCAN = 256 * 1024


class ResultClassifier(Protocol):
    def __call__(self, tool: Tool, output: Any) -> bool:
        """True when ``output`` must taint the task."""
        ...


def _texts(value: Any, budget: list[int]) -> list[str]:
    out: list[str] = []
    stack = [value]
    while stack and budget[0] > 0:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item[: budget[0]])
            budget[0] -= len(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return out


def injection_markers(tool: Tool, output: Any) -> bool:
    """Heuristic: the output contains instruction-like text aimed at the model."""
    return any(_MARKERS.search(text) for text in _texts(output, [_MAX_SCAN]))


def taints(tool: Tool, output: Any, classifier: ResultClassifier | None) -> bool:
    if tool.risk.untrusted_output:
        return True
    return classifier is not None and classifier(tool, output)
