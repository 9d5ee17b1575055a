"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 11:38:22.360365
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=256), nullable=False),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column("change_digest", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_object", ["object_type", "object_id"], unique=False)
        batch_op.create_index("ix_audit_events_ts", ["ts"], unique=False)

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "projects",
        sa.Column(
            "project_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("business_goal", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=256), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "experiments",
        sa.Column(
            "experiment_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column(
            "project_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.project_id"], name=op.f("fk_experiments_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("experiment_id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("name", name=op.f("uq_experiments_name")),
    )
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_experiments_project_id"), ["project_id"], unique=False)

    op.create_table(
        "kpis",
        sa.Column(
            "kpi_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "project_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metric", sa.String(length=250), nullable=False),
        sa.Column("target", sa.Float(precision=53), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("judged_at", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=256), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.project_id"], name=op.f("fk_kpis_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("kpi_id", name=op.f("pk_kpis")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_kpis_project_id_name")),
    )
    op.create_table(
        "okrs",
        sa.Column(
            "okr_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "project_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("objective", sa.Text(), nullable=False),
        sa.Column("key_results", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=256), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.project_id"], name=op.f("fk_okrs_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("okr_id", name=op.f("pk_okrs")),
    )
    with op.batch_alter_table("okrs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_okrs_project_id"), ["project_id"], unique=False)

    op.create_table(
        "experiment_tags",
        sa.Column(
            "experiment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name=op.f("fk_experiment_tags_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("experiment_id", "key", name=op.f("pk_experiment_tags")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column(
            "experiment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("run_name", sa.String(length=250), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("user", sa.String(length=256), nullable=False),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("parent_run_id", sa.String(length=32), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("git_dirty", sa.Boolean(), nullable=True),
        sa.Column("cpu_seconds", sa.Float(precision=53), nullable=True),
        sa.Column("peak_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("deleted_time", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name=op.f("fk_runs_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_experiment_order", ["experiment_id", "start_time", "run_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_runs_parent_run_id"), ["parent_run_id"], unique=False)

    op.create_table(
        "latest_metrics",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("experiment_id", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_latest_metrics_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_latest_metrics")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.create_index(
            "ix_latest_metrics_order", ["experiment_id", "key", "value", "run_id"], unique=False
        )

    op.create_table(
        "metrics",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name=op.f("fk_metrics_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
    )
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.create_index("ix_metrics_run_key_step", ["run_id", "key", "step"], unique=False)

    op.create_table(
        "params",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name=op.f("fk_params_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_params")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "run_artifacts",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_run_artifacts_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "path", name=op.f("pk_run_artifacts")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "run_inputs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_run_inputs_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "name", "digest", "role", name=op.f("pk_run_inputs")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "tags",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name=op.f("fk_tags_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_tags")),
        sqlite_with_rowid=False,
    )

    # Seed rows every store relies on: the chain's genesis head, the default project and the
    # "Default" experiment (id 0, as MLflow users expect).
    now = int(time.time() * 1000)
    op.execute(
        sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)").bindparams(h="0" * 64)
    )
    op.execute(
        sa.text(
            "INSERT INTO projects (project_id, name, business_goal, description, owner, "
            "creation_time, last_update_time) VALUES (1, 'default', '', 'Experiments that belong "
            "to no other project.', '', :t, :t)"
        ).bindparams(t=now)
    )
    op.execute(
        sa.text(
            "INSERT INTO experiments (experiment_id, name, project_id, description, "
            "lifecycle_stage, creation_time, last_update_time) "
            "VALUES (0, 'Default', 1, '', 'active', :t, :t)"
        ).bindparams(t=now)
    )
    if op.get_bind().dialect.name == "postgresql":  # explicit ids do not advance sequences
        op.execute("SELECT setval(pg_get_serial_sequence('projects', 'project_id'), 1)")


def downgrade() -> None:
    op.drop_table("tags")
    op.drop_table("run_inputs")
    op.drop_table("run_artifacts")
    op.drop_table("params")
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_metrics_run_key_step")

    op.drop_table("metrics")
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_latest_metrics_order")

    op.drop_table("latest_metrics")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_parent_run_id"))
        batch_op.drop_index("ix_runs_experiment_order")

    op.drop_table("runs")
    op.drop_table("experiment_tags")
    with op.batch_alter_table("okrs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_okrs_project_id"))

    op.drop_table("okrs")
    op.drop_table("kpis")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiments_project_id"))

    op.drop_table("experiments")
    op.drop_table("projects")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_ts")
        batch_op.drop_index("ix_audit_events_object")

    op.drop_table("audit_events")
