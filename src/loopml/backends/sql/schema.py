"""Tables of the metadata store. Alembic migrations under ``migrations/`` must match this file."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite needs INTEGER PRIMARY KEY for an auto-incrementing rowid alias. Key-value tables are
# WITHOUT ROWID on SQLite: the row lives in its primary-key b-tree, so a write touches one tree
# less and a search's EXISTS (run_id, key) lookup finds the value in the key it probes.
AutoId = BigInteger().with_variant(Integer(), "sqlite")
Double = Float(precision=53)

projects = Table(
    "projects",
    metadata,
    Column("project_id", AutoId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("business_goal", Text, nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("owner", String(256), nullable=False, default=""),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

okrs = Table(
    "okrs",
    metadata,
    Column("okr_id", AutoId, primary_key=True, autoincrement=True),
    Column("project_id", ForeignKey("projects.project_id"), nullable=False, index=True),
    Column("objective", Text, nullable=False),
    Column("key_results", Text, nullable=False, default="[]"),  # JSON list of strings
    Column("owner", String(256), nullable=False, default=""),
    Column("creation_time", BigInteger, nullable=False),
)

kpis = Table(
    "kpis",
    metadata,
    Column("kpi_id", AutoId, primary_key=True, autoincrement=True),
    Column("project_id", ForeignKey("projects.project_id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("metric", String(250), nullable=False),
    Column("target", Double, nullable=False),
    Column("direction", String(16), nullable=False),
    Column("judged_at", String(16), nullable=False),
    Column("owner", String(256), nullable=False, default=""),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
    UniqueConstraint("project_id", "name"),
)

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", AutoId, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("project_id", ForeignKey("projects.project_id"), nullable=False, index=True),
    Column("description", Text, nullable=False, default=""),
    Column("lifecycle_stage", String(16), nullable=False, default="active"),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column("experiment_id", ForeignKey("experiments.experiment_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    sqlite_with_rowid=False,
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("experiment_id", ForeignKey("experiments.experiment_id"), nullable=False),
    Column("run_name", String(250), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger),
    Column("user", String(256), nullable=False, default=""),
    Column("lifecycle_stage", String(16), nullable=False, default="active"),
    Column("parent_run_id", String(32), index=True),
    Column("source", Text, nullable=False, default=""),
    Column("git_commit", String(64)),
    Column("git_dirty", Boolean),
    Column("cpu_seconds", Double),
    Column("peak_memory_bytes", BigInteger),
    Column("deleted_time", BigInteger),
    Index("ix_runs_experiment_order", "experiment_id", "start_time", "run_id"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", ForeignKey("runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    sqlite_with_rowid=False,
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", ForeignKey("runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    sqlite_with_rowid=False,
)

# Full history, append-only. NaN is stored as NULL (SQLite cannot hold NaN); readers map it back.
metrics = Table(
    "metrics",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.run_id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Double),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_metrics_run_key_step", "run_id", "key", "step"),
)

# One row per (run, key): the value at the highest (step, timestamp). Search and ordering read it;
# experiment_id is copied here so "order by a metric within an experiment" walks one index.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", ForeignKey("runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("experiment_id", BigInteger, nullable=False),
    Column("value", Double),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_latest_metrics_order", "experiment_id", "key", "value", "run_id"),
    sqlite_with_rowid=False,
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_id", ForeignKey("runs.run_id"), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("digest", String(128), primary_key=True),
    Column("role", String(64), primary_key=True),
    Column("source", Text, nullable=False, default=""),
    sqlite_with_rowid=False,
)

run_artifacts = Table(
    "run_artifacts",
    metadata,
    Column("run_id", ForeignKey("runs.run_id"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_time", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("object_type", String(64), nullable=False),
    Column("object_id", String(256), nullable=False),
    Column("change", Text, nullable=False),
    Column("change_digest", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_events_object", "object_type", "object_id"),
    Index("ix_audit_events_ts", "ts"),
)

# A single row (id = 1): the chain's tip. Writers lock it, which serialises the chain.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# Identity (governance). Passwords are Argon2id PHC strings (NULL: no password login, e.g. a
# service account); API tokens are stored only as the SHA-256 of their secret.
users = Table(
    "users",
    metadata,
    Column("user_id", String(32), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(256), nullable=False, default=""),
    Column("password_hash", String(256)),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("is_service_account", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_time", BigInteger, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("user_id", ForeignKey("users.user_id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("created_time", BigInteger, nullable=False),
    Column("expires_time", BigInteger),
    Column("revoked_time", BigInteger),
    Column("last_used_time", BigInteger),
)

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", ForeignKey("users.user_id"), primary_key=True),
    Column("project_id", ForeignKey("projects.project_id"), primary_key=True, index=True),
    Column("role", String(32), nullable=False),
    sqlite_with_rowid=False,
)

# Requests retried with the same Idempotency-Key are applied once (the platform server).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("created_time", BigInteger, nullable=False, index=True),
)

# Browser sessions of the web UI, by the SHA-256 of their id (shared by all server workers).
sessions = Table(
    "sessions",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("user_id", String(32), nullable=False),
    Column("username", String(64), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_time", Double, nullable=False),
    Column("last_seen_time", Double, nullable=False, index=True),
)

# Failed logins and token creations, one row per failure, by subject ("user:<name>" or
# "addr:<client address>"): every worker counts the same window, so throttling holds across them.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", AutoId, primary_key=True),
    Column("subject", String(320), nullable=False),
    Column("time", Double, nullable=False),
    Index("ix_login_failures_subject_time", "subject", "time"),
)

# --- model registry (stage 4) -------------------------------------------------------------------
# latest_version is the counter versions are numbered from: "UPDATE … SET latest_version =
# latest_version + 1 … RETURNING" takes the row lock, so concurrent registrations get 1, 2, 3, …
# and a rolled-back one gives its number back (no gaps).
registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("project_id", ForeignKey("projects.project_id"), nullable=False, index=True),
    Column("description", Text, nullable=False, default=""),
    Column("owner", String(256), nullable=False, default=""),
    Column("risk_tier", String(16), nullable=False, default="medium"),
    Column("intended_use", Text, nullable=False, default=""),
    Column("tags", Text, nullable=False, default="{}"),  # JSON object
    Column("policy", Text, nullable=False, default="{}"),  # JSON PromotionPolicy
    Column("latest_version", BigInteger, nullable=False, default=0),
    Column("created_time", BigInteger, nullable=False),
    Column("updated_time", BigInteger, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", ForeignKey("registered_models.name"), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("source", String(1024), nullable=False),
    Column("run_id", ForeignKey("runs.run_id"), nullable=False, index=True),
    Column("digest", String(64), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("flavor", String(32), nullable=False, default=""),
    Column("signature", Text, nullable=True),  # JSON
    Column("datasets", Text, nullable=False, default="[]"),  # JSON list
    Column("description", Text, nullable=False, default=""),
    Column("tags", Text, nullable=False, default="{}"),
    Column("created_by", String(256), nullable=False, default=""),
    Column("created_time", BigInteger, nullable=False),
    Column("updated_time", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", ForeignKey("registered_models.name"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("updated_by", String(256), nullable=False, default=""),
    Column("updated_time", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

gate_reports = Table(
    "gate_reports",
    metadata,
    Column("report_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("target", String(16), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("checks", Text, nullable=False),  # JSON list of {name, passed, detail}
    Column("created_by", String(256), nullable=False),
    Column("created_time", BigInteger, nullable=False),
    Column("override_by", String(256), nullable=False, default=""),
    Column("override_reason", Text, nullable=False, default=""),
    Index("ix_gate_reports_name_version", "name", "version"),
)

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("target", String(16), nullable=False),
    Column("requested_by", String(256), nullable=False),
    Column("required_roles", Text, nullable=False),  # JSON list
    Column("status", String(16), nullable=False),
    Column("decisions", Text, nullable=False, default="[]"),  # JSON list of Approval
    Column("comment", Text, nullable=False, default=""),
    Column("created_time", BigInteger, nullable=False),
    Column("updated_time", BigInteger, nullable=False),
    Index("ix_approval_requests_name_version", "name", "version"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("webhook_id", String(32), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("secret", String(256), nullable=False),  # the HMAC key: needed in clear to sign
    Column("events", Text, nullable=False, default="[]"),
    Column("model", String(128), nullable=True),
    Column("created_by", String(256), nullable=False),
    Column("created_time", BigInteger, nullable=False),
)

# --- deployments (stage 4) ------------------------------------------------------------------------
# The current spec is on the deployment's row; every revision (the first one too) is kept beside
# it. `revision` is compared-and-set on each change, so a stale writer gets a Conflict.
deployments = Table(
    "deployments",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("project_id", ForeignKey("projects.project_id"), nullable=False, index=True),
    Column("spec", Text, nullable=False),  # JSON DeploymentSpec
    Column("revision", BigInteger, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_by", String(256), nullable=False),
    Column("created_time", BigInteger, nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("updated_time", BigInteger, nullable=False),
    # Prediction-log policy: kept apart from the revisioned spec, so a rollback never lifts a hold.
    Column("log_retention_days", Integer, nullable=True),  # None: the server's default
    Column("legal_hold", Boolean, nullable=False, default=False, server_default=false()),
)

deployment_revisions = Table(
    "deployment_revisions",
    metadata,
    Column("name", ForeignKey("deployments.name"), primary_key=True),
    Column("revision", BigInteger, primary_key=True),
    Column("spec", Text, nullable=False),  # JSON DeploymentSpec
    Column("actor", String(256), nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("reason", String(256), nullable=False),
    sqlite_with_rowid=False,
)
