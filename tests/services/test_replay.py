"""Replaying recorded decisions against a candidate policy version."""

from __future__ import annotations

import shutil
from pathlib import Path

from tribune.bootstrap import copy_pack
from tribune.policy.bundle import compile_bundle, load_bundle
from tribune.services.replay import replay

from .conftest import World


def _candidate(tmp_path: Path, extra: str = "") -> object:
    directory = tmp_path / "candidate"
    if directory.exists():
        shutil.rmtree(directory)
    copy_pack(directory)
    if extra:
        (directory / "extra.cedar").write_text(extra)
    return compile_bundle(load_bundle(directory).files, version_id="candidate")


def _decide_some(world: World) -> None:
    task = world.task(targets=["customer@client.example"])
    gov = world.tr.governor
    gov.decide(task.id, "crm.read", {"customer_id": "1"})
    gov.decide(task.id, "email.send", {"to": ["customer@client.example"], "body": "hi"})
    gov.decide(task.id, "email.send", {"to": ["x@elsewhere.example"], "body": "hi"})
    gov.decide(task.id, "no.such.tool", {})  # never reached Cedar: not replayable


def test_the_active_pack_replays_to_the_same_decisions(world: World, tmp_path: Path) -> None:
    _decide_some(world)
    results = list(replay(_candidate(tmp_path), world.tr.store.records(), world.tr.store))
    assert [r.tool for r in results] == ["crm.read", "email.send", "email.send"]
    assert not any(r.changed for r in results)
    assert [r.was for r in results] == ["allow", "allow", "approval_required"]


def test_a_stricter_candidate_shows_what_would_change(world: World, tmp_path: Path) -> None:
    _decide_some(world)
    freeze = (
        '@id("email-frozen")\n@reason("no e-mail this week")\n'
        'forbid (principal, action, resource in ToolGroup::"email");\n'
    )
    results = list(replay(_candidate(tmp_path, freeze), world.tr.store.records(), world.tr.store))
    changed = [r for r in results if r.changed]
    assert [(r.tool, r.was, r.now.effect.value) for r in changed] == [
        ("email.send", "allow", "deny"),
        ("email.send", "approval_required", "deny"),
    ]
    assert all("email-frozen" in r.now.policy_ids for r in changed)
    assert all("no e-mail this week" in r.now.reasons for r in changed)
