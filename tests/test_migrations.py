"""Schema migrations: frozen databases upgrade, migrators take turns, schema matches the code."""

from __future__ import annotations

import multiprocessing as mp
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from loopml.backends.sql.audit import SqlAuditStore
from loopml.backends.sql.engine import Database, make_engine
from loopml.backends.sql.migrate import (
    HEAD_REVISION,
    MIGRATIONS_DIR,
    current_revision,
    ensure_schema,
)
from loopml.backends.sql.schema import metadata
from loopml.backends.sql.tracking import SqlTrackingStore
from loopml.errors import Conflict
from loopml.tracking.entities import Metric

FROZEN = Path(__file__).parent / "data" / "loopml-0001.db"
FROZEN_RUN = "add8171cf79745e1a15b1ec044435d52"


def test_head_revision_constant_matches_alembic():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD_REVISION]


def test_frozen_first_schema_database_upgrades_to_head(tmp_path):
    db_file = tmp_path / "old.db"
    shutil.copy(FROZEN, db_file)
    engine = make_engine(f"sqlite:///{db_file}")
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    ensure_schema(engine)
    assert current_revision(engine) == HEAD_REVISION
    db = Database(engine)
    store = SqlTrackingStore(db)
    run = store.get_run(FROZEN_RUN)
    assert run.run_name == "frozen-run" and run.params == {"model": "rf"}
    assert run.metrics == {"acc": 0.59} and run.cpu_seconds == 1.5
    assert len(store.get_metric_history(FROZEN_RUN, "acc")) == 10
    assert SqlAuditStore(db).verify().ok
    new = store.create_run(run.experiment_id, run_name="after", user="u", start_time=1, actor="t")
    store.log_batch(new.run_id, metrics=[Metric("acc", 1.0, 1, 0)], actor="t")
    assert SqlAuditStore(db).verify().ok


def _migrate(url: str) -> None:
    ensure_schema(make_engine(url))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_first_use_migrates_exactly_once(backend, tmp_path, request):
    url = (
        f"sqlite:///{tmp_path / 'race.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_empty_url")
    )
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_migrate, args=(url,)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 6
    engine = make_engine(url)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert c.execute(sa.text("SELECT count(*) FROM projects")).scalar() == 1
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrated_schema_matches_the_tables_in_code(backend, tmp_path, request):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = (
        f"sqlite:///{tmp_path / 'cmp.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_empty_url")
    )
    engine = make_engine(url)
    ensure_schema(engine)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    engine.dispose()
    assert diff == []


def test_database_newer_than_code_is_refused(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'future.db'}")
    ensure_schema(engine)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(Conflict, match="newer"):
        ensure_schema(engine)


def test_store_in_a_folder_with_unusual_characters(tmp_path):
    import loopml

    home = tmp_path / "a@b c#d"
    with loopml.Client(loopml.Settings(home=home)) as client:
        run = client.create_run("0")
        client.set_terminated(run.run_id)
    assert (home / "loopml.db").exists()
