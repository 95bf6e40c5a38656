"""The store's tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

Times are stored as integers: microseconds since the Unix epoch, UTC (``codec.to_micros``), so
they compare and sort the same on both databases. Nested model values (entitlements, scopes,
tools, policy files) are JSON text written by ``codec.dumps``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    true,
)

metadata = MetaData()

# INTEGER (not BIGINT) on SQLite so that a single-column key is the rowid: fast head lookups.
Seq = BigInteger().with_variant(Integer(), "sqlite")
Micros = BigInteger

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

users = Table(
    "users",
    metadata,
    Column("name", Text, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("groups", Text, nullable=False),  # JSON list of group names
)

groups = Table(
    "groups",
    metadata,
    Column("name", Text, primary_key=True),
    Column("description", Text, nullable=False),
)

agents = Table(
    "agents",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("owner_kind", Text, nullable=False),
    Column("owner_name", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("environment", Text, nullable=False),
    Column("entitlements", Text, nullable=False),  # JSON Entitlements
    Column("status", Text, nullable=False),
    Column("created_at", Micros, nullable=False),
)

tools = Table(
    "tools",
    metadata,
    Column("name", Text, primary_key=True),
    Column("spec", Text, nullable=False),  # JSON Tool
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("agent_id", Text, ForeignKey("agents.id"), nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", Micros, nullable=False),
    Column("expires_at", Micros, nullable=False),
    Column("ended_at", Micros),
    Column("parent_id", Text),
    Column("root_id", Text, nullable=False),
    Column("depth", Integer, nullable=False),
    Column("scope", Text, nullable=False),  # JSON Scope
    Column("session", Text, nullable=False),  # JSON SessionState
    Index("ix_tasks_agent_created", "agent_id", "created_at"),
    Index("ix_tasks_created", "created_at"),
    Index("ix_tasks_root", "root_id"),
    Index("ix_tasks_parent", "parent_id"),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("created_at", Micros, nullable=False),
    Column("digest", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("files", Text, nullable=False),  # JSON {path: text}
    Column("active", Boolean, nullable=False),
)
# INVARIANT: at most one active version; the database enforces it.
Index(
    "ux_policy_versions_one_active",
    policy_versions.c.active,
    unique=True,
    sqlite_where=policy_versions.c.active == true(),
    postgresql_where=policy_versions.c.active == true(),
)

learned_targets = Table(
    "learned_targets",
    metadata,
    Column("target", Text, primary_key=True),
    Column("first_seen", Micros, nullable=False),
)

audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=False),
    Column("kind", Text, nullable=False),
    Column("ts", Micros, nullable=False),
    Column("action_id", Text),
    Column("task_id", Text),
    Column("agent_id", Text),
    Column("body", Text, nullable=False),  # the canonical envelope exactly as `link` made it
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    # Only the two lookups the decision path and approvals need: every index costs each
    # append about 6-10 us on SQLite. Time ranges map to seq ranges (seq grows with time);
    # an agent's records are found through its tasks.
    Index("ix_audit_records_action", "action_id"),
    Index("ix_audit_records_task", "task_id"),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Column("ts", Micros, nullable=False),
    Column("signature", Text, nullable=False),
    PrimaryKeyConstraint("seq", "key_id"),
)

# Added by migration 2. Only the secret's SHA-256 is kept; the primary key is the lookup that
# authenticates every API request.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("principal", Text, nullable=False),  # user:<name> | agent:<spiffe id>
    Column("role", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("created_at", Micros, nullable=False),
    Column("expires_at", Micros),
    Column("revoked_at", Micros),
    Column("note", Text, nullable=False),
)

# Added by migration 3: identities, single-use and revoked token ids, leases, sealed secrets.
agent_keys = Table(
    "agent_keys",
    metadata,
    Column("agent_id", Text, nullable=False),
    Column("kid", Text, nullable=False),
    Column("jwk", Text, nullable=False),  # public key only
    Column("source", Text, nullable=False),
    Column("created_at", Micros, nullable=False),
    Column("revoked_at", Micros),
    PrimaryKeyConstraint("agent_id", "kid"),
)

# Assertion ids seen (replay defence) and token ids revoked: one row per id until it expires.
used_token_ids = Table(
    "used_token_ids",
    metadata,
    Column("issuer", Text, nullable=False),
    Column("jti", Text, nullable=False),
    Column("expires_at", Micros, nullable=False),
    PrimaryKeyConstraint("issuer", "jti"),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", Text, primary_key=True),
    Column("expires_at", Micros, nullable=False),
    Column("revoked_at", Micros, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("id", Text, primary_key=True),
    Column("task_id", Text, ForeignKey("tasks.id"), nullable=False),
    Column("state", Text, nullable=False),
    Column("expires_at", Micros, nullable=False),
    Column("issued_at", Micros, nullable=False),
    Column("body", Text, nullable=False),  # the whole lease as codec JSON
    Index("ix_leases_task", "task_id"),
    Index("ix_leases_state_expiry", "state", "expires_at"),
)

sealed_secrets = Table(
    "sealed_secrets",
    metadata,
    Column("name", Text, primary_key=True),
    Column("body", Text, nullable=False),  # codec JSON; the value inside is sealed
)

# Added by migration 4: approval tickets and the votes on them. One row per person per ticket
# (the primary key), so the same approver twice counts once whatever the races.
approval_tickets = Table(
    "approval_tickets",
    metadata,
    Column("id", Text, primary_key=True),
    Column("action_digest", Text, nullable=False),
    Column("task_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", Micros, nullable=False),
    Column("resolved_at", Micros),
    Column("consumed_by", Text),
    Column("body", Text, nullable=False),  # the ticket as codec JSON, without state and votes
    Index("ix_approval_tickets_digest", "action_digest"),
    Index("ix_approval_tickets_state_created", "state", "created_at"),
)

approval_votes = Table(
    "approval_votes",
    metadata,
    Column("ticket_id", Text, ForeignKey("approval_tickets.id"), nullable=False),
    Column("user_name", Text, nullable=False),
    Column("approve", Boolean, nullable=False),
    Column("at", Micros, nullable=False),
    Column("body", Text, nullable=False),  # the vote as codec JSON
    PrimaryKeyConstraint("ticket_id", "user_name"),
)
