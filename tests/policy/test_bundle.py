"""Policy directories: reading, rebuilding from the store, and every compile problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribune.errors import InvalidInput, PolicyInvalid
from tribune.policy import Bundle, builtin_schema, compile_bundle, load_bundle

PERMIT = '@id("p")\npermit (principal, action == Action::"call", resource);\n'


def problems_of(files: dict[str, str]) -> list[str]:
    with pytest.raises(PolicyInvalid) as info:
        compile_bundle(files)
    assert info.value.code == "policy_invalid"
    return list(info.value.problems)


def test_load_bundle_reads_policies_recursively_schema_and_tests(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "a.cedar").write_text(PERMIT)
    (tmp_path / "sub" / "deeper" / "b.cedar").write_text("// nothing\n")
    (tmp_path / "schema.cedarschema").write_text(builtin_schema())
    (tmp_path / "tests" / "cases.yaml").write_text("[]\n")
    (tmp_path / "README.md").write_text("not part of a version")
    (tmp_path / ".git" / "x.cedar").write_text("hidden")
    (tmp_path / ".hidden.cedar").write_text("hidden")
    bundle = load_bundle(tmp_path)
    assert sorted(bundle.files) == [
        "a.cedar",
        "schema.cedarschema",
        "sub/deeper/b.cedar",
        "tests/cases.yaml",
    ]
    assert bundle.schema == builtin_schema()
    assert list(bundle.test_files) == ["tests/cases.yaml"]
    assert sorted(bundle.policy_files) == ["a.cedar", "sub/deeper/b.cedar"]


def test_load_bundle_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        load_bundle(tmp_path / "nope")


def test_load_bundle_reports_files_that_are_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "bad.cedar").write_bytes(b"\xff\xfe permit")
    with pytest.raises(PolicyInvalid) as info:
        load_bundle(tmp_path)
    assert info.value.problems == ["bad.cedar: not UTF-8 text"]


def test_from_files_round_trips_and_rejects_escaping_paths() -> None:
    files = {"b.cedar": PERMIT, "a/c.cedar": "// x\n"}
    bundle = Bundle.from_files(files)
    assert dict(bundle.files) == files
    assert bundle.digest == Bundle.from_files(dict(reversed(files.items()))).digest
    assert bundle.digest != Bundle.from_files({"b.cedar": PERMIT}).digest
    for bad in ("../x.cedar", "/etc/x.cedar", "a/../../x.cedar", "a\\x.cedar", "", "./a.cedar"):
        with pytest.raises(InvalidInput):
            Bundle.from_files({bad: PERMIT})


def test_compile_reads_ids_annotations_and_positions() -> None:
    compiled = compile_bundle(
        {
            "a.cedar": PERMIT,
            "b.cedar": "\n\nforbid (principal, action, resource) when { context.approvals > 5 };\n",
        },
        version_id="v7",
    )
    assert compiled.version_id == "v7"
    assert compiled.policy_ids == ("p", "b.cedar:3")
    info = compiled.by_id["b.cedar:3"]
    assert (info.file, info.line, info.effect, info.tier) == ("b.cedar", 3, "forbid", None)


def test_parse_errors_name_file_and_line_and_all_are_listed() -> None:
    problems = problems_of(
        {
            "a.cedar": PERMIT + "\n\npermit (principal, action, resource) when { 1 + };\n",
            "z.cedar": "permit (principal, actionx, resource);\n",
        }
    )
    assert len(problems) == 2
    assert problems[0].startswith("a.cedar:5: ")
    assert problems[1].startswith("z.cedar:1: ")


def test_lexer_problems_are_reported() -> None:
    problems = problems_of({"a.cedar": PERMIT + "permit (principal, action, resource)\n"})
    assert problems == ["a.cedar:3: policy does not end with `;`"]


def test_duplicate_ids_are_reported_across_files() -> None:
    problems = problems_of({"a.cedar": PERMIT, "b.cedar": "// c\n" + PERMIT})
    assert problems == ["b.cedar:2: duplicate policy id `p` (first at a.cedar:1)"]


def test_explicit_id_may_not_collide_with_a_generated_one() -> None:
    problems = problems_of(
        {"a.cedar": 'permit (principal, action, resource);\n@id("a.cedar:1")\n' + PERMIT[9:]}
    )
    assert problems == ["a.cedar:2: duplicate policy id `a.cedar:1` (first at a.cedar:1)"]


def test_empty_id_is_reported() -> None:
    assert problems_of({"a.cedar": '@id("") permit (principal, action, resource);'}) == [
        "a.cedar:1: `@id` is empty"
    ]


@pytest.mark.parametrize(
    ("annotations", "effect", "problem"),
    [
        ('@approval("0")', "forbid", "`@approval` must be a positive integer, not `0`"),
        ('@approval("-1")', "forbid", "`@approval` must be a positive integer, not `-1`"),
        ('@approval("two")', "forbid", "`@approval` must be a positive integer, not `two`"),
        ('@approval("1.5")', "forbid", "`@approval` must be a positive integer, not `1.5`"),
        ("@approval", "forbid", "`@approval` must be a positive integer, not ``"),
        ('@approval("²")', "forbid", "`@approval` must be a positive integer, not `²`"),
        ('@approval("1")', "permit", "`@approval` is only allowed on `forbid` policies"),
        (
            '@approval("1") @owner_may_approve("yes")',
            "forbid",
            "`@owner_may_approve` must be `true` or `false`, not `yes`",
        ),
        ('@approvers("sre")', "forbid", "`@approvers` needs `@approval`"),
        ('@owner_may_approve("true")', "forbid", "`@owner_may_approve` needs `@approval`"),
        (
            '@approval("1") @approvers("sre, bad name")',
            "forbid",
            "invalid group name `bad name` in `@approvers`",
        ),
    ],
)
def test_bad_approval_annotations(annotations: str, effect: str, problem: str) -> None:
    text = f"{PERMIT}\n{annotations}\n{effect} (principal, action, resource);\n"
    assert problems_of({"a.cedar": text}) == [f"a.cedar:4: {problem}"]


def test_approval_tier_is_read_once() -> None:
    text = (
        PERMIT + '@id("t") @approval("3") @approvers(" sre , ops,sre") @owner_may_approve("true")\n'
        "forbid (principal, action, resource) unless { context.approvals >= 3 };\n"
    )
    tier = compile_bundle({"a.cedar": text}).by_id["t"].tier
    assert tier is not None
    assert (tier.quorum, tier.approvers, tier.owner_may_approve) == (3, ("ops", "sre"), True)


def test_schema_errors_map_back_to_their_statement() -> None:
    text = (
        PERMIT
        + "// a type error\n"
        + 'permit (principal, action == Action::"call", resource)\n'
        + "when { resource.read_only + 1 > 0 };\n"
        + 'permit (principal, action == Action::"call", resource) when { context.nope };\n'
    )
    problems = problems_of({"a.cedar": text, "b.cedar": PERMIT.replace('"p"', '"q"')})
    assert problems, problems
    assert {p.split(": ", 1)[0] for p in problems} == {"a.cedar:4", "a.cedar:6"}
    assert any("attribute `nope`" in p for p in problems)
    assert not any("for policy `policy" in p for p in problems)


def test_templates_are_refused() -> None:
    problems = problems_of(
        {"a.cedar": PERMIT + "permit (principal == ?principal, action, resource);"}
    )
    assert problems == ["a.cedar:3: templates (`?principal`, `?resource`) are not supported"]


def test_empty_version_is_invalid() -> None:
    assert problems_of({"a.cedar": "// nothing\n"}) == [
        "no policy found: a version must contain at least one policy"
    ]
    assert problems_of({}) == ["no policy found: a version must contain at least one policy"]


def test_a_directory_schema_replaces_the_builtin_one() -> None:
    schema = builtin_schema().replace("approvals: Long,", "approvals: Long,\n  ticket: String,")
    text = (
        PERMIT
        + 'permit (principal, action == Action::"call", resource) when { context.ticket == "x" };\n'
    )
    assert problems_of({"a.cedar": text}) != []
    compiled = compile_bundle({"a.cedar": text, "schema.cedarschema": schema})
    assert len(compiled.policies) == 2


def test_a_broken_schema_is_reported() -> None:
    problems = problems_of({"a.cedar": PERMIT, "schema.cedarschema": "entity Foo {"})
    assert len(problems) == 1 and problems[0].startswith("schema.cedarschema: ")


def test_every_kind_of_problem_is_reported_together() -> None:
    problems = problems_of(
        {
            "a.cedar": PERMIT + PERMIT + "permit (principal, action, resource) when { 1 + };\n",
            "b.cedar": '@approval("x") forbid (principal, action, resource);\n'
            'permit (principal, action == Action::"call", resource) when { context.nope };',
        }
    )
    assert [p.split(": ", 1)[0] for p in problems] == [
        "a.cedar:5",
        "a.cedar:3",
        "b.cedar:1",
        "b.cedar:2",
    ]


def test_public_surface_is_explicit() -> None:
    import tribune.policy

    assert sorted(tribune.policy.__all__) == [
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
    assert all(hasattr(tribune.policy, name) for name in tribune.policy.__all__)
