"""Tribune: runtime governance for AI agents.

Attribution, authorisation, execution and audit for every tool call an agent makes. The public
surface is small and listed in ``__all__`` (guarded by a test)::

    import tribune
    tr = tribune.open()                       # ~/.tribune, created on first use
    @tr.govern("crm.read")
    def read_customer(customer_id: str) -> dict: ...
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tribune.core.model import (
    ApprovalRequirement,
    Decision,
    Effect,
    Entitlements,
    ExtractorSpec,
    Limits,
    RiskFacts,
    Tool,
)
from tribune.errors import ActionDenied, ApprovalDenied, ApprovalRequired, TribuneError

if TYPE_CHECKING:
    from tribune.bootstrap import Tribune
    from tribune.sdk.remote import Client

__version__ = "0.1.0"


def open(home: str | Path | None = None, *, create: bool = True) -> Tribune:
    """Open (and, by default, create) the Tribune home at ``home`` (default ``TRIBUNE_HOME``
    or ``~/.tribune``) for embedded use."""
    from tribune.bootstrap import open_tribune

    return open_tribune(home, create=create)


def connect(url: str, *, api_key: str, timeout: float = 10.0) -> Client:
    """Connect to a Tribune service (``tribune up``): the same ``govern`` decorator and task
    helpers as ``open()``, with decisions made by the service."""
    from tribune.sdk.remote import Client

    return Client(url, api_key, timeout=timeout)


__all__ = [
    "ActionDenied",
    "ApprovalDenied",
    "ApprovalRequired",
    "ApprovalRequirement",
    "Decision",
    "Effect",
    "Entitlements",
    "ExtractorSpec",
    "Limits",
    "RiskFacts",
    "Tool",
    "TribuneError",
    "__version__",
    "connect",
    "open",
]
