"""`tribune audit tail|verify|export`, and tampering found by verify."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tribune.crypto import Ed25519Verifier
from tribune.crypto.keys import load_public_keys
from tribune.services.audit import verify_jsonl

from .conftest import Cli, copy_home


@pytest.fixture(scope="module")
def busy_template(
    tmp_path_factory: pytest.TempPathFactory, runner: CliRunner, org_template: Path
) -> Path:
    """The org home after a few decided calls: allow, deny and approval-required."""
    org = Cli(runner, copy_home(org_template, tmp_path_factory.mktemp("busy") / "home"))
    task = org.start("helper", "--purpose", "p", "--tool", "kb.search", "--tool", "email.send")
    org.ok("check", "--task", task, "--tool", "kb.search", "--args", '{"q": "a"}')
    org("check", "--task", task, "--tool", "db.drop", "--args", '{"table": "t"}')
    org("check", "--task", task, "--tool", "email.send", "--args", '{"to": ["x@y.example"]}')
    org.ok("task", "end", task)
    return org.home


@pytest.fixture
def busy(runner: CliRunner, tmp_path: Path, busy_template: Path) -> Cli:
    """A private copy of the busy home."""
    return Cli(runner, copy_home(busy_template, tmp_path / "busy"))


def _sql(cli: Cli, statement: str, *params: object) -> None:
    with sqlite3.connect(cli.home / "tribune.db") as db:
        assert db.execute(statement, params).rowcount == 1


# ----------------------------------------------------------------- tail


def test_tail_prints_the_last_records_as_json_lines(busy: Cli) -> None:
    total = busy.audit_count()
    lines = busy.ok("audit", "tail", "-n", "3").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == [total - 2, total - 1, total]
    for r in records:
        assert re.fullmatch(r"[0-9a-f]{64}", r["hash"])
        assert r["kind"] in {"intent", "decision", "result", "event"}
    assert records[-1]["data"]["event"] == "task_ended"
    # Each record links to the one before it.
    assert records[1]["prev"] == records[0]["hash"]
    assert records[2]["prev"] == records[1]["hash"]


def test_tail_defaults_and_bounds(busy: Cli) -> None:
    total = busy.audit_count()
    assert len(busy.ok("audit", "tail").stdout.splitlines()) == min(20, total)
    assert len(busy.ok("audit", "tail", "-n", str(total + 100)).stdout.splitlines()) == total
    assert busy.ok("audit", "tail", "-n", "0").stdout == ""


# ----------------------------------------------------------------- verify


def test_verify_a_clean_log(busy: Cli) -> None:
    result = busy.ok("audit", "verify")
    found = re.match(r"ok: ([\d,]+) records, (\d+) signed checkpoint", result.stdout)
    assert found, result.stdout
    assert int(found.group(1).replace(",", "")) == busy.audit_count()
    assert int(found.group(2)) >= 1
    busy.ok("audit", "verify", "--strict")


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_verify_names_an_edited_record(busy: Cli, where: str) -> None:
    total = busy.audit_count()
    seq = {"first": 1, "middle": total // 2, "last": total}[where]
    _sql(
        busy,
        "UPDATE audit_records SET body = replace(body, '\"seq\":', '\"seq\": ') WHERE seq = ?",
        seq,
    )
    result = busy("audit", "verify")
    assert result.exit_code == 1, result.output
    assert f"TAMPERED at record {seq}:" in result.stdout


def test_verify_finds_a_rewritten_decision(busy: Cli) -> None:
    # Turn a denial into an allow, as an attacker covering tracks would.
    with sqlite3.connect(busy.home / "tribune.db") as db:
        seq, body = db.execute(
            "SELECT seq, body FROM audit_records WHERE kind = 'decision' AND body LIKE ?"
            " ORDER BY seq LIMIT 1",
            ('%"effect":"deny"%',),
        ).fetchone()
        db.execute(
            "UPDATE audit_records SET body = ? WHERE seq = ?",
            (body.replace('"effect":"deny"', '"effect":"allow"'), seq),
        )
    result = busy("audit", "verify")
    assert result.exit_code == 1
    assert f"TAMPERED at record {seq}:" in result.stdout


def test_verify_finds_a_deleted_record(busy: Cli) -> None:
    seq = busy.audit_count() // 2
    _sql(busy, "DELETE FROM audit_records WHERE seq = ?", seq)
    result = busy("audit", "verify")
    assert result.exit_code == 1
    assert "TAMPERED at record" in result.stdout


@pytest.mark.parametrize("where", ["second", "last"])
def test_verify_finds_a_rewritten_hash(busy: Cli, where: str) -> None:
    # A changed hash column breaks its own link (and the next record's). On the newest record
    # closing the home also refuses to sign a checkpoint over it: the report still shows.
    seq = 2 if where == "second" else busy.audit_count()
    _sql(busy, "UPDATE audit_records SET hash = ? WHERE seq = ?", "0" * 64, seq)
    result = busy("audit", "verify")
    assert result.exit_code == 1
    assert f"TAMPERED at record {seq}:" in result.stdout


def test_a_write_after_tampering_keeps_its_result_and_warns(busy: Cli) -> None:
    _sql(busy, "UPDATE audit_records SET hash = ? WHERE seq = ?", "0" * 64, busy.audit_count())
    result = busy("group", "add", "late-team")
    assert result.exit_code == 0 and "late-team" in result.stdout  # the write happened
    assert "warning[audit_integrity]" in result.stderr  # and the refusal to sign is loud
    assert "Traceback" not in result.output
    assert busy("audit", "verify").exit_code == 1


# ----------------------------------------------------------------- export


def _verifier(cli: Cli) -> Ed25519Verifier:
    return Ed25519Verifier(load_public_keys(cli.home / "keys"))


def test_export_to_a_file(busy: Cli, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    result = busy.ok("audit", "export", "--format", "jsonl", "-o", str(out))
    total = busy.audit_count()
    assert f"exported {total:,} records" in result.stdout

    with out.open(encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    records = [line for line in lines if "seq" in line]
    checkpoints = [line["checkpoint"] for line in lines if "checkpoint" in line]
    assert [r["seq"] for r in records] == list(range(1, total + 1))
    assert checkpoints
    assert all(set(r) == {"seq", "hash", "prev_hash", "body"} for r in records)

    # The export verifies offline with the public key alone.
    with out.open(encoding="utf-8") as f:
        report = verify_jsonl(f, _verifier(busy))
    assert report.ok, report
    assert report.checked == total


def test_an_edited_export_fails_offline_verification(busy: Cli, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    busy.ok("audit", "export", "-o", str(out))
    text = out.read_text(encoding="utf-8")
    assert '"effect":"allow"' in text
    edited = text.replace('"effect":"allow"', '"effect":"deny"', 1)
    report = verify_jsonl(edited.splitlines(keepends=True), _verifier(busy))
    assert not report.ok


def test_export_to_stdout_and_after(busy: Cli) -> None:
    total = busy.audit_count()
    lines = [json.loads(line) for line in busy.ok("audit", "export").stdout.splitlines()]
    assert len([line for line in lines if "seq" in line]) == total

    after = total - 3
    partial = [
        json.loads(line)
        for line in busy.ok("audit", "export", "--after", str(after)).stdout.splitlines()
    ]
    assert [r["seq"] for r in partial if "seq" in r] == [after + 1, after + 2, after + 3]


def test_export_refuses_an_unknown_format(busy: Cli, tmp_path: Path) -> None:
    out = tmp_path / "audit.csv"
    result = busy.error("invalid_input", 2, "audit", "export", "--format", "csv", "-o", str(out))
    assert "`csv`" in result.stderr
    assert not out.exists()


def test_export_to_an_unwritable_path(busy: Cli, tmp_path: Path) -> None:
    out = tmp_path / "no-such-dir" / "audit.jsonl"
    result = busy.error("invalid_input", 2, "audit", "export", "-o", str(out))
    assert "audit.jsonl" in result.stderr
