"""PostgreSQL role leases through Tribune itself: a home configured with a `postgres` credential
source, the lease service and the kill switch, against the private scram-sha-256 cluster. A
revoked lease must fail a real login."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.conftest import CONFIG, World, _populate
from tribune.bootstrap import init_home, open_tribune
from tribune.core.model import LeaseState
from tribune.errors import CredentialBackendUnavailable
from tribune.system import FixedClock

from .conftest import Cluster

SOURCE = """
[credentials.reports-db]
backend = "postgres"
url = "{url}"
grants = [{{ privileges = ["SELECT"], tables = ["public.invoices"] }}]
tools = ["crm.read"]
ttl = 600
"""


def _world(tmp_path: Path, url: str, pg_url: str) -> World:
    home = tmp_path / "home"
    home.mkdir()
    (home / "tribune.toml").write_text(CONFIG.format(url=url) + SOURCE.format(url=pg_url))
    init_home(home)
    clock = FixedClock(datetime.now(UTC))  # the database checks VALID UNTIL on its own clock
    tr = open_tribune(home, clock=clock)
    _populate(tr)
    return World(tr, clock, home)


@pytest.fixture
def pg_world(pg_cluster: Cluster, tmp_path: Path) -> Iterator[World]:
    world = _world(tmp_path, f"sqlite:///{tmp_path / 'tribune.db'}", pg_cluster.url())
    yield world
    world.tr.close()


def login(credential: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(credential["dsn"], connect_timeout=5)


def test_a_role_lease_logs_in_until_its_task_ends(pg_world: World) -> None:
    tr = pg_world.tr
    task = pg_world.task(tools=["crm.read"], ttl=3600)
    issued = tr.leases.issue(task.id, "reports-db")
    assert issued.lease.handle.startswith("tribune_")
    with login(issued.credential) as conn:
        assert conn.execute("SELECT count(*) FROM public.invoices").fetchone() == (3,)
    session = login(issued.credential)
    tr.tasks.end(task.id)
    assert tr.leases.get(issued.lease.id).state is LeaseState.REVOKED
    with pytest.raises(psycopg.OperationalError):
        login(issued.credential)
    with pytest.raises(psycopg.Error):  # its open session was terminated
        session.execute("SELECT 1").fetchone()
    session.close()
    assert issued.credential["password"] not in "".join(r.body for r in tr.store.records())


def test_the_kill_switch_drops_every_role_of_an_agent(pg_world: World) -> None:
    tr = pg_world.tr
    tasks = [pg_world.task(tools=["crm.read"]) for _ in range(2)]
    issued = [tr.leases.issue(t.id, "reports-db") for t in tasks for _ in range(3)]
    done = tr.killswitch.revoke(agent="helper")
    assert (done.tasks_ended, done.leases_revoked, done.leases_failed) == (2, 6, 0)
    for one in issued:
        with pytest.raises(psycopg.OperationalError):
            login(one.credential)


def test_an_unreachable_database_fails_closed(tmp_path: Path) -> None:
    world = _world(
        tmp_path, f"sqlite:///{tmp_path / 'tribune.db'}", "postgresql://admin:pw@127.0.0.1:9/app"
    )
    try:
        task = world.task(tools=["crm.read"])
        with pytest.raises(CredentialBackendUnavailable) as err:
            world.tr.leases.issue(task.id, "reports-db")
        assert "pw@" not in str(err.value) and ":pw" not in repr(err.value)
        # Taking back what might have been made failed too: the lease stays active for the
        # sweeper, which keeps trying without crashing.
        (lease,) = world.tr.store.list_leases(task_ids=[task.id])
        assert lease.state is LeaseState.ACTIVE
        assert world.tr.leases.sweep() == 0
        assert world.tr.store.get_lease(lease.id) == lease
    finally:
        world.tr.close()
