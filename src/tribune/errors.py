"""The error tree. Every error carries a stable snake_case ``code`` and a human message.

Edges map codes to HTTP statuses, MCP errors and exit codes; nothing below the edges does.
Messages follow Cedar's style: lowercase, no trailing period, user input in backticks, and
an optional separate ``hint``. Messages never contain secrets or why a credential failed.
"""

from __future__ import annotations

from typing import Any


class TribuneError(Exception):
    """Base of every error Tribune raises on purpose."""

    code: str = "tribune_error"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.hint = hint

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{code, message, hint?}``."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class InvalidInput(TribuneError):
    """A malformed request, argument or file."""

    code = "invalid_input"


class NotFound(TribuneError):
    """A named thing does not exist. Subclasses name what."""

    code = "not_found"


class UnknownAgent(NotFound):
    code = "unknown_agent"


class UnknownTool(NotFound):
    code = "unknown_tool"


class UnknownTask(NotFound):
    code = "unknown_task"


class UnknownPrincipal(NotFound):
    code = "unknown_principal"


class Unauthenticated(TribuneError):
    """No credential, or one that is not valid. The message never says why (the audit does)."""

    code = "unauthenticated"


class Forbidden(TribuneError):
    """An authenticated caller whose role or identity does not allow the operation."""

    code = "forbidden"


class Conflict(TribuneError):
    """The thing already exists, or the change contradicts stored state."""

    code = "conflict"


class AgentInactive(TribuneError):
    code = "agent_inactive"


class TaskInactive(TribuneError):
    """The task has ended or expired."""

    code = "task_inactive"


class ScopeExceedsEntitlements(TribuneError):
    code = "scope_exceeds_entitlements"


class ExtractionFailed(TribuneError):
    """An argument could not be read as the type its extractor expects."""

    code = "extraction_failed"


class PolicyInvalid(TribuneError):
    """A policy directory failed parsing, schema validation or its own tests."""

    code = "policy_invalid"

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["problems"] = self.problems
        return out

    def __str__(self) -> str:
        return "\n".join([self.message, *("  " + p for p in self.problems)])


class NoActivePolicy(TribuneError):
    code = "no_active_policy"


class PolicyEvaluationError(TribuneError):
    code = "policy_evaluation_error"


class StoreError(TribuneError):
    """The store failed or is unreachable. ``detail`` holds the driver's first line for
    operators (logs, the CLI); edges must not send it to callers (it may name hosts)."""

    code = "store_unavailable"
    detail: str = ""


class CredentialBackendUnavailable(TribuneError):
    """A credential backend (a database, a secret store) could not mint or revoke."""

    code = "credential_backend_unavailable"


class AuditIntegrityError(TribuneError):
    code = "audit_integrity"


class ConfigError(TribuneError):
    code = "config_invalid"


class ActionDenied(TribuneError):
    """Raised by the embedded decorator when a governed call is not allowed.

    ``decision`` is the full decision value (effect, policy ids, errors).
    """

    code = "action_denied"

    def __init__(self, decision: Any, action_id: str) -> None:
        reasons = "; ".join(getattr(decision, "reasons", ()) or ())
        errors = "; ".join(e.message for e in getattr(decision, "errors", ()) or ())
        if decision.policy_ids:
            why = f" by {', '.join(decision.policy_ids)}" + (f": {reasons}" if reasons else "")
        else:
            why = f": {errors}" if errors else ": no policy permits it"
        super().__init__(f"`{decision.tool}` denied{why}")
        self.decision = decision
        self.action_id = action_id


class ApprovalRequired(ActionDenied):
    """The call needs human approval before it may run."""

    code = "approval_required"

    def __init__(self, decision: Any, action_id: str, ticket_id: str | None = None) -> None:
        super().__init__(decision, action_id)
        self.ticket_id = ticket_id  # the ticket approvers answer; retrying the call uses it
        req = decision.approval
        who = ",".join(req.approvers) or "any approver"
        self.message = f"`{decision.tool}` needs {req.quorum} approval(s) from `{who}`"
        if ticket_id:
            self.message += f" (ticket {ticket_id})"
        self.args = (self.message,)


class ApprovalDenied(ActionDenied):
    """The call's approval was denied, or expired before quorum: it does not run."""

    code = "approval_denied"

    def __init__(self, decision: Any, action_id: str, ticket_id: str, state: str) -> None:
        super().__init__(decision, action_id)
        self.ticket_id = ticket_id
        self.message = f"the approval of `{decision.tool}` was {state} (ticket {ticket_id})"
        self.args = (self.message,)


class KeyFileInvalid(ConfigError):
    """A key file is missing, unreadable, of the wrong key type, or would be overwritten."""

    code = "key_file_invalid"


class KeyFileInsecure(ConfigError):
    """A private key file is readable by group or others, or owned by another user."""

    code = "key_file_insecure"
