"""Policy directories: read them into a files map, then parse and validate them into a policy.

A directory holds ``*.cedar`` files (searched recursively), an optional ``schema.cedarschema``
(the built-in schema when absent) and policy tests ``tests/*.yaml``. Its ``{relative path:
text}`` map is what a stored ``PolicyVersion`` keeps; ``Bundle.from_files`` rebuilds it.

``compile_bundle`` reports every problem at once, each as ``file:line: problem``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from tribune.core.canonical import digest
from tribune.core.model import NAME_RE
from tribune.errors import InvalidInput, PolicyInvalid
from tribune.policy.engine import ApprovalTier, CompiledPolicy, PolicyInfo
from tribune.policy.source import Statement, split_statements

SCHEMA_FILE = "schema.cedarschema"
TESTS_DIR = "tests"
APPROVAL_KEYS = ("approval", "approvers", "owner_may_approve")


def builtin_schema() -> str:
    """The Cedar schema shipped with Tribune (``policy/pack/schema.cedarschema``)."""
    return resources.files("tribune.policy").joinpath("pack", SCHEMA_FILE).read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Bundle:
    """The files of one policy directory: ``{relative posix path: text}``."""

    files: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_files(cls, files: Mapping[str, str]) -> Bundle:
        """Rebuild a bundle from a stored files map, checking every path is a plain relative one."""
        bad = [p for p in files if not _is_relative(p)]
        if bad:
            raise InvalidInput(f"invalid policy file path `{sorted(bad)[0]}`")
        return cls(dict(sorted(files.items())))

    @property
    def policy_files(self) -> dict[str, str]:
        """The ``*.cedar`` files, by path."""
        return {p: t for p, t in self.files.items() if p.endswith(".cedar")}

    @property
    def schema(self) -> str | None:
        """The directory's own schema text, or None to use the built-in one."""
        return self.files.get(SCHEMA_FILE)

    @property
    def test_files(self) -> dict[str, str]:
        """The policy test files ``tests/*.yaml`` (and ``.yml``), by path."""
        return {p: t for p, t in self.files.items() if _is_test_file(p)}

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical files map: a version's content fingerprint."""
        return digest(dict(self.files))


def load_bundle(path: str | Path) -> Bundle:
    """Read the policy directory at ``path``: its ``.cedar`` files, schema and tests.

    Hidden files and folders (``.git``) are skipped. Raises ``InvalidInput`` when ``path`` is
    not a directory and ``PolicyInvalid`` when a file is not UTF-8 text.
    """
    root = Path(path)
    if not root.is_dir():
        raise InvalidInput(f"policy directory `{path}` does not exist or is not a directory")
    files: dict[str, str] = {}
    problems: list[str] = []
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root).as_posix()
        if file.is_file() and _wanted(rel):
            try:
                files[rel] = file.read_text("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{rel}: not UTF-8 text")
    if problems:
        raise PolicyInvalid(f"policy directory `{path}` cannot be read", problems=problems)
    return Bundle(files)


def default_pack() -> Bundle:
    """The policy pack shipped with Tribune (``policy/pack``): policies, schema and tests."""
    files: dict[str, str] = {}
    pending = [("", resources.files("tribune.policy").joinpath("pack"))]
    while pending:
        prefix, folder = pending.pop()
        for child in folder.iterdir():
            rel = prefix + child.name
            if child.is_dir():
                pending.append((rel + "/", child))
            elif _wanted(rel):
                files[rel] = child.read_text("utf-8")
    return Bundle(dict(sorted(files.items())))


def compile_bundle(
    files: Bundle | Mapping[str, str],
    *,
    version_id: str | None = None,
    indexed: bool = True,
    cache_size: int = 4096,
) -> CompiledPolicy:
    """Parse and validate a policy directory's files into a ``CompiledPolicy``.

    Raises ``PolicyInvalid`` listing every problem: parse errors, templates, duplicate ids, bad
    approval annotations, schema errors, and an empty set of policies. ``version_id`` is the
    policy version id decisions carry; ``indexed=False`` evaluates every policy on every call (the
    reference the scope index is tested against).
    """
    bundle = files if isinstance(files, Bundle) else Bundle.from_files(files)
    problems: list[str] = []
    parsed = _parse_files(bundle, problems)
    infos = _infos(parsed, problems)
    schema = _schema(bundle, problems)
    if schema is not None and parsed:
        problems.extend(_validate([st for st, _ in parsed], schema))
    if not parsed and not problems:
        problems.append("no policy found: a version must contain at least one policy")
    if problems or schema is None:
        raise PolicyInvalid(f"policy version has {len(problems)} problem(s)", problems=problems)
    return CompiledPolicy(
        infos, schema, version_id=version_id, indexed=indexed, cache_size=cache_size
    )


def _parse_files(bundle: Bundle, problems: list[str]) -> list[tuple[Statement, dict[str, Any]]]:
    """Every statement of every ``.cedar`` file with its Cedar JSON form; problems appended."""
    parsed: list[tuple[Statement, dict[str, Any]]] = []
    for path, text in sorted(bundle.policy_files.items()):
        statements, source_problems = split_statements(path, text)
        problems.extend(f"{p.file}:{p.line}: {p.message}" for p in source_problems)
        for st in statements:
            est, problem = _parse(st)
            if est is None:
                problems.append(f"{st.file}:{st.line}: {problem}")
            else:
                parsed.append((st, est))
    return parsed


def _infos(parsed: list[tuple[Statement, dict[str, Any]]], problems: list[str]) -> list[PolicyInfo]:
    """Policy ids and annotations, read once; id and approval problems appended."""
    infos: list[PolicyInfo] = []
    seen: dict[str, str] = {}
    for st, est in parsed:
        where = f"{st.file}:{st.line}"
        raw = est.get("annotations", {})
        annotations = {k: "" if v is None else str(v) for k, v in raw.items()}
        pid = annotations.get("id", where)
        if not pid:
            problems.append(f"{where}: `@id` is empty")
        elif pid in seen:
            problems.append(f"{where}: duplicate policy id `{pid}` (first at {seen[pid]})")
        seen.setdefault(pid, where)
        tier, tier_problems = _tier(est["effect"], annotations)
        problems.extend(f"{where}: {p}" for p in tier_problems)
        infos.append(PolicyInfo(pid, st.file, st.line, est["effect"], annotations, est, tier))
    return infos


def _parse(st: Statement) -> tuple[dict[str, Any] | None, str]:
    """The Cedar JSON form of one statement, or a problem."""
    try:
        doc = json.loads(cedarpy.policies_to_json_str(st.text))
    except ValueError as exc:
        return None, str(exc)
    if doc.get("templates"):
        return None, "templates (`?principal`, `?resource`) are not supported"
    statics = list(doc.get("staticPolicies", {}).values())
    if len(statics) != 1:
        return None, "expected exactly one policy"
    est: dict[str, Any] = statics[0]
    return est, ""


def _tier(effect: str, annotations: Mapping[str, str]) -> tuple[ApprovalTier | None, list[str]]:
    """The approval tier of a policy, and any problem with its approval annotations."""
    problems: list[str] = []
    raw = annotations.get("approval")
    if raw is None:
        problems.extend(f"`@{k}` needs `@approval`" for k in APPROVAL_KEYS[1:] if k in annotations)
        return None, problems
    if effect != "forbid":
        problems.append("`@approval` is only allowed on `forbid` policies")
    quorum = int(raw) if raw.isascii() and raw.isdigit() else 0
    if quorum < 1:
        problems.append(f"`@approval` must be a positive integer, not `{raw}`")
    approvers = tuple(g.strip() for g in annotations.get("approvers", "").split(",") if g.strip())
    problems.extend(
        f"invalid group name `{g}` in `@approvers`" for g in approvers if not NAME_RE.match(g)
    )
    owner = annotations.get("owner_may_approve", "false")
    if owner not in ("true", "false"):
        problems.append(f"`@owner_may_approve` must be `true` or `false`, not `{owner}`")
    if problems:
        return None, problems
    return ApprovalTier(quorum, tuple(sorted(set(approvers))), owner == "true"), []


def _schema(bundle: Bundle, problems: list[str]) -> cedarpy.Schema | None:
    text = bundle.schema
    try:
        return cedarpy.Schema.from_str(builtin_schema() if text is None else text)
    except ValueError as exc:
        problems.append(f"{SCHEMA_FILE}: {exc}")
        return None


def _validate(statements: list[Statement], schema: cedarpy.Schema) -> list[str]:
    """Schema validation problems, mapped back to each statement's file and line."""
    # INVARIANT: every statement holds exactly one static policy, so Cedar's generated id
    # `policyN` is the N-th statement of the joined text.
    result = cedarpy.validate_policies("\n".join(st.text for st in statements), schema)
    problems = []
    for err in result.errors:
        pid = err.policy_id
        index = int(pid[6:]) if pid.startswith("policy") and pid[6:].isdigit() else -1
        message = err.error.removeprefix(f"for policy `{pid}`, ")
        if 0 <= index < len(statements):
            st = statements[index]
            problems.append(f"{st.file}:{st.line}: {message}")
        else:
            problems.append(message)
    return problems


def _wanted(rel: str) -> bool:
    """Whether a directory entry belongs to the bundle (hidden paths never do)."""
    if any(part.startswith(".") for part in rel.split("/")):
        return False
    return rel.endswith(".cedar") or rel == SCHEMA_FILE or _is_test_file(rel)


def _is_relative(path: str) -> bool:
    """A plain relative posix path: no leading ``/``, no empty, ``.`` or ``..`` parts."""
    return "\\" not in path and all(p not in ("", ".", "..") for p in path.split("/"))


def _is_test_file(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 2 and parts[0] == TESTS_DIR and parts[1].endswith((".yaml", ".yml"))
