"""Cedar policies: policy directories, compilation, decisions, policy tests, the default pack.

``load_bundle`` reads a directory, ``compile_bundle`` validates it into a ``CompiledPolicy``
whose ``decide`` turns a ``PolicyRequest`` into a ``Decision``; ``load_cases`` and
``run_policy_tests`` run a directory's YAML tests against it.
"""

from tribune.policy.bundle import Bundle, builtin_schema, compile_bundle, default_pack, load_bundle
from tribune.policy.engine import ApprovalTier, CompiledPolicy, PolicyInfo
from tribune.policy.request import PolicyRequest, default_context
from tribune.policy.testing import (
    CaseResult,
    PolicyCase,
    format_report,
    load_cases,
    raise_for_failures,
    run_policy_tests,
)

__all__ = [
    "ApprovalTier",
    "Bundle",
    "CaseResult",
    "CompiledPolicy",
    "PolicyCase",
    "PolicyInfo",
    "PolicyRequest",
    "builtin_schema",
    "compile_bundle",
    "default_context",
    "default_pack",
    "format_report",
    "load_bundle",
    "load_cases",
    "raise_for_failures",
    "run_policy_tests",
]
