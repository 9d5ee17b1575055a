"""The prediction log's upkeep: compaction keeps every row exactly once (also interrupted at each
step, raced, and under a reader), pruning keeps the retention edge and stops on legal hold, every
prune is audited with its rows, the floor is enforced."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopml.artifacts.factory import artifact_store_from_uri
from loopml.artifacts.store import ArtifactStore
from loopml.errors import InvalidArgument, Unavailable
from loopml.serving import predlog_compaction, predlog_retention
from loopml.serving.deployment_service import DeploymentService
from loopml.serving.predlog import HOUR_MS, PredictionLogger, PredictionRecord, segment_folder
from loopml.serving.predlog_compaction import compact_hour, deletion_order
from loopml.serving.predlog_reader import read_predictions
from loopml.serving.predlog_records import RetentionRules
from loopml.serving.predlog_segments import (
    MANIFEST_KEY,
    hour_files,
    local_segments,
    visible,
)
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.testing.deployment_contract import registered_model, single

T0 = 472_223 * HOUR_MS  # 2023-11-14 23:00 UTC
DAY_MS = 24 * HOUR_MS
LATER = T0 + 30 * DAY_MS  # "now" for compaction: every test hour is long finished
BASE = "predictions/fraud"


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "file":
        yield artifact_store_from_uri((tmp_path / "a").as_uri())
        return
    memory = artifact_store_from_uri(f"memory://upkeep-{uuid.uuid4().hex}")
    yield memory
    if memory.exists("predictions"):
        memory.delete("predictions")


def write(store: ArtifactStore, hour: int, sizes: list[int], *, feedback: bool = True) -> None:
    """One segment per size in the hour starting at ``hour`` (and a feedback segment each)."""
    with PredictionLogger(store, flush_interval_s=3600) as log:
        for s, size in enumerate(sizes):
            for r in range(size):
                rid = f"{hour}-{s}-{r}-{uuid.uuid4().hex[:6]}"
                log.record(PredictionRecord(rid, "fraud", "m", str(1 + r % 2), hour + s * 10 + r,
                                            "/predict", {"x": [r]}, [r % 2],
                                            latency_ms=float(r)))  # fmt: skip
                if feedback and r == 0:
                    log.record_feedback(rid, "fraud", [1], timestamp_ms=hour + s * 10 + 5)
            log.flush()


def rows(store: ArtifactStore) -> dict[str, collections.Counter[tuple[Any, ...]]]:
    """Every row a reader takes, per kind, as a multiset of whole rows."""
    out: dict[str, collections.Counter[tuple[Any, ...]]] = {}
    with local_segments(store) as local:
        for kind in ("predictions", "feedback"):
            found: collections.Counter[tuple[Any, ...]] = collections.Counter()
            files = [f for fs in hour_files(store, BASE, None, None).values() for f in fs]
            for path in local.visible_paths(files, kind):
                found.update(tuple(r.values()) for r in pq.read_table(path).to_pylist())
            out[kind] = found
    return out


def names(store: ArtifactStore, hour: int = T0) -> list[str]:
    return [f.rpartition("/")[2] for fs in hour_files(store, BASE, hour, hour).values() for f in fs]


# compaction -------------------------------------------------------------------------------------
def test_compaction_folds_an_hour_into_one_file_per_kind(store: ArtifactStore) -> None:
    write(store, T0, [3, 1, 4])
    write(store, T0 + HOUR_MS, [2])  # one segment a kind: nothing to do
    before = rows(store)
    done = compact_hour(store, BASE, T0, now_ms=LATER)
    assert sorted((c.kind, c.files_before, c.files_removed, c.rows) for c in done) == [
        ("feedback", 3, 3, 3), ("predictions", 3, 3, 8)
    ]  # fmt: skip
    assert rows(store) == before
    assert sorted(n.split("-")[0:2] for n in names(store)) == [
        ["feedback", "compacted"], ["predictions", "compacted"]
    ]  # fmt: skip
    assert compact_hour(store, BASE, T0 + HOUR_MS, now_ms=LATER) == []
    assert compact_hour(store, BASE, T0, now_ms=LATER) == []  # already one file each
    frame = read_predictions(store, "fraud", T0, T0 + HOUR_MS)
    assert len(frame) == 8 and frame["ground_truth"].notna().sum() == 3


def test_the_hour_being_written_is_never_compacted(store: ArtifactStore) -> None:
    write(store, T0, [1, 1])
    for now in (T0 + 1, T0 + HOUR_MS, T0 + HOUR_MS + predlog_compaction.GRACE_MS - 1):
        assert compact_hour(store, BASE, T0, now_ms=now) == []
        assert predlog_compaction.compactable_hours(store, BASE, now_ms=now) == []
    assert len(names(store)) == 4
    later = T0 + HOUR_MS + predlog_compaction.GRACE_MS
    assert predlog_compaction.compactable_hours(store, BASE, now_ms=later) == [T0]
    assert compact_hour(store, BASE, T0 + 5, now_ms=LATER) == []  # not an hour's start


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    hours=st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=5), min_size=1, max_size=3),
    late=st.lists(st.integers(1, 5), max_size=2),
)
def test_rows_before_equal_rows_after_as_a_multiset(hours: list[list[int]], late: list[int]):
    store = artifact_store_from_uri(f"memory://upkeep-{uuid.uuid4().hex}")
    for i, sizes in enumerate(hours):
        write(store, T0 + i * HOUR_MS, sizes)
    before = rows(store)
    for i in range(len(hours)):
        compact_hour(store, BASE, T0 + i * HOUR_MS, now_ms=LATER)
    assert rows(store) == before
    if late:  # late segments beside a compacted file, then compacted again
        write(store, T0, late)
        before = rows(store)
        compact_hour(store, BASE, T0, now_ms=LATER)
        assert rows(store) == before
        assert len([n for n in names(store) if n.startswith("predictions-")]) == 1
    store.delete("predictions")


class Interrupted(Exception):
    pass


def _steps(store_factory: Any) -> list[str]:
    """The checkpoints of one uninterrupted compaction of the standard hour."""
    store = store_factory()
    write(store, T0, [2, 3, 1])
    seen: list[str] = []
    compact_hour(store, BASE, T0, now_ms=LATER, checkpoint=seen.append)
    return seen


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_a_compaction_interrupted_at_any_step_loses_and_duplicates_nothing(tmp_path, kind):
    def fresh() -> ArtifactStore:
        if kind == "file":
            return artifact_store_from_uri((tmp_path / uuid.uuid4().hex).as_uri())
        return artifact_store_from_uri(f"memory://upkeep-{uuid.uuid4().hex}")

    steps = _steps(fresh)
    assert steps[0] == "published" and sum(s.startswith("deleted") for s in steps) == 6
    assert len(steps) == 8  # two kinds: published + three deletions each
    for stop in range(len(steps)):
        store = fresh()
        write(store, T0, [2, 3, 1])
        before = rows(store)
        count = iter(range(len(steps)))

        def crash(step: str, stop: int = stop, count: Iterator[int] = count) -> None:
            if next(count) == stop:
                raise Interrupted(step)

        with pytest.raises(Interrupted):
            compact_hour(store, BASE, T0, now_ms=LATER, checkpoint=crash)
        assert rows(store) == before, steps[stop]
        frame = read_predictions(store, "fraud", T0, T0 + HOUR_MS)
        assert frame["request_id"].is_unique and len(frame) == 6
        compact_hour(store, BASE, T0, now_ms=LATER)  # the next run finishes the job
        assert rows(store) == before
        assert len(names(store)) == 2, names(store)


def test_a_failed_publish_changes_nothing(store: ArtifactStore, monkeypatch) -> None:
    write(store, T0, [2, 2])
    before, files = rows(store), names(store)

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "put_file", refuse)
    with pytest.raises(OSError, match="disk full"):
        compact_hour(store, BASE, T0, now_ms=LATER)
    assert (rows(store), names(store)) == (before, files)


def test_readers_see_each_row_once_at_every_step(store: ArtifactStore) -> None:
    write(store, T0, [2, 3, 1])
    expected = sorted(read_predictions(store, "fraud", T0, T0 + HOUR_MS)["request_id"])
    seen = []

    def read(step: str) -> None:
        frame = read_predictions(store, "fraud", T0, T0 + HOUR_MS)
        assert sorted(frame["request_id"]) == expected, step
        assert frame["ground_truth"].notna().sum() == 3, step
        seen.append(step)

    compact_hour(store, BASE, T0, now_ms=LATER, checkpoint=read)
    assert len(seen) == 8


class CompactingAfterListing:
    """An artifact store whose first listing of a day is followed by a compaction of that day's
    hour: the reader then holds names of files that are gone."""

    def __init__(self, inner: ArtifactStore) -> None:
        self._inner, self.fired = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def list(self, prefix: str = "", *, recursive: bool = False) -> Any:
        found = self._inner.list(prefix, recursive=recursive)
        if recursive and not self.fired:
            self.fired += 1
            compact_hour(self._inner, BASE, T0, now_ms=LATER)
        return found


def test_a_file_removed_between_listing_and_reading_makes_the_reader_list_again(
    store: ArtifactStore,
) -> None:
    write(store, T0, [2, 3])
    expected = sorted(read_predictions(store, "fraud", T0, T0 + HOUR_MS)["request_id"])
    racing = CompactingAfterListing(store)
    frame = read_predictions(racing, "fraud", T0, T0 + HOUR_MS)  # type: ignore[arg-type]
    assert racing.fired == 1 and sorted(frame["request_id"]) == expected
    assert len(names(store)) == 2  # it did compact under the reader


def test_a_listing_that_missed_a_new_file_and_a_removed_one_is_read_again(
    store: ArtifactStore,
) -> None:
    """Listings are no snapshots: one taken while a compaction publishes and deletes can miss
    the compacted file and a part it replaced. The reader lists again after reading and starts
    over when the two listings differ."""
    write(store, T0, [2, 3], feedback=False)
    expected = sorted(read_predictions(store, "fraud", T0, T0 + HOUR_MS)["request_id"])
    steps = iter(range(10))

    def stop_after_the_first_deletion(step: str) -> None:
        if next(steps) == 1:
            raise Interrupted(step)

    with pytest.raises(Interrupted):
        compact_hour(store, BASE, T0, now_ms=LATER, checkpoint=stop_after_the_first_deletion)
    assert len(names(store)) == 2  # the compacted file and the part not yet removed

    class MissingTheNewFile(CompactingAfterListing):
        def list(self, prefix: str = "", *, recursive: bool = False) -> Any:
            found = self._inner.list(prefix, recursive=recursive)
            if recursive and not self.fired:
                self.fired += 1
                return [i for i in found if "compacted" not in i.path]
            return found

    torn = MissingTheNewFile(store)
    frame = read_predictions(torn, "fraud", T0, T0 + HOUR_MS)  # type: ignore[arg-type]
    assert torn.fired == 1 and sorted(frame["request_id"]) == expected


def test_a_log_that_never_holds_still_is_unavailable_not_wrong(store: ArtifactStore) -> None:
    write(store, T0, [1])

    class Vanishing(CompactingAfterListing):
        def list(self, prefix: str = "", *, recursive: bool = False) -> Any:
            found = self._inner.list(prefix, recursive=recursive)
            if recursive:  # every listing names a file that does not exist
                ghost = type(found[0])(f"{found[0].path.rpartition('/')[0]}/predictions-1-x"
                                       ".parquet", False)  # fmt: skip
                return [*found, ghost]
            return found

    with pytest.raises(Unavailable, match="kept changing"):
        read_predictions(Vanishing(store), "fraud", T0, T0 + HOUR_MS)  # type: ignore[arg-type]


def test_racing_compactions_of_overlapping_files_still_read_each_row_once(
    store: ArtifactStore, tmp_path: Path
) -> None:
    """P compacted {A, B}; Q, which listed after X arrived but before P published, compacted
    {A, B, X}: both files are there, and the smaller gives way."""
    write(store, T0, [2, 2, 1], feedback=False)
    before = rows(store)
    a, b, x = names(store)
    folder = segment_folder("predictions", "fraud", T0)
    with local_segments(store) as local:
        paths = {n: local.path(f"{folder}/{n}") for n in (a, b, x)}
        for manifest, label in (([a, b], "p"), ([a, b, x], "q")):
            out = tmp_path / f"{label}.parquet"
            predlog_compaction._write_compacted([paths[n] for n in manifest], manifest, out)
            store.put_file(out, f"{folder}/predictions-compacted-{T0}-{label * 32}.parquet")
    assert rows(store) == before
    assert len(read_predictions(store, "fraud", T0, T0 + HOUR_MS)) == 5
    compact_hour(store, BASE, T0, now_ms=LATER)
    assert rows(store) == before and len(names(store)) == 1


def test_visibility_and_the_deletion_order_follow_the_manifests() -> None:
    c1, c2 = frozenset({"a", "b"}), frozenset({"a", "b", "x"})
    assert visible(["a", "b", "x"], {}) == ["a", "b", "x"]
    assert visible(["a", "b", "c1", "x"], {"c1": c1}) == ["c1", "x"]
    assert visible(["a", "c1", "c2", "x"], {"c1": c1, "c2": c2}) == ["c2"]
    chain = {"c1": c1, "c3": frozenset({"c1", "x", "b"})}  # c1's parts partly gone already
    assert visible(["a", "c1", "c3", "x"], chain) == ["c3"]
    # a part goes before the compacted file that hides it, never after
    order = deletion_order(["a", "c1", "c3", "x"], chain)
    assert order.index("a") < order.index("c1") and set(order) == {"a", "c1", "x"}


def test_a_compacted_file_names_what_it_replaces(store: ArtifactStore) -> None:
    write(store, T0, [1, 1], feedback=False)
    parts = names(store)
    compact_hour(store, BASE, T0, now_ms=LATER)
    [compacted] = names(store)
    with local_segments(store) as local:
        path = local.path(f"{segment_folder('predictions', 'fraud', T0)}/{compacted}")
        metadata = pq.read_metadata(path).metadata
    assert sorted(metadata[MANIFEST_KEY].decode().split("\n")) == sorted(parts)


# retention and pruning --------------------------------------------------------------------------
@pytest.fixture
def world(tmp_path):
    stack = Stack.from_settings(Settings(home=tmp_path / "home"))
    model = registered_model(stack)
    stack.deployments.create_deployment("fraud", single(model), actor="setup")
    yield stack
    stack.close()


def service(stack: Stack, now_ms: int, rules: RetentionRules | None = None) -> DeploymentService:
    return DeploymentService(
        stack.deployments.store, stack.registry, artifacts=stack.artifacts,
        retention=rules or RetentionRules(30, 7), clock=lambda: now_ms / 1000,
    )  # fmt: skip


def one(store: ArtifactStore, ts: int, rid: str) -> None:
    with PredictionLogger(store) as log:
        log.record(PredictionRecord(rid, "fraud", "m", "1", ts, "/predict", {}, [0], 1.0))


def kept(store: ArtifactStore) -> list[str]:
    return sorted(read_predictions(store, "fraud", 0, 2**62)["request_id"])


def prune_events(stack: Stack) -> list[Any]:
    events = stack.audit.list_events(object_type="deployment", object_id="fraud")
    return [e for e in events if e.action == "deployment.log_prune"]


def test_a_row_exactly_at_the_edge_is_kept_and_one_before_it_goes(world: Stack) -> None:
    now = T0 + 40 * DAY_MS  # on an hour: the edge is an hour's start
    edge = now - 30 * DAY_MS
    for ts, rid in ((edge, "at-edge"), (edge - 1, "before-edge"), (edge + 1, "after-edge")):
        one(world.artifacts, ts, rid)
    [result] = service(world, now).prune_log("fraud", actor="op")
    assert kept(world.artifacts) == ["after-edge", "at-edge"]
    assert (result.rows, result.files, result.cutoff_ms) == (
        {"predictions": 1, "feedback": 0}, 1, edge
    )  # fmt: skip
    assert service(world, now).prune_log("fraud", actor="op") == []


def test_whole_hours_only_a_row_past_the_edge_in_the_edges_hour_stays(world: Stack) -> None:
    now = T0 + 40 * DAY_MS + HOUR_MS // 2  # the edge is inside an hour
    edge = now - 30 * DAY_MS
    edge_hour = edge // HOUR_MS * HOUR_MS
    for ts, rid in ((edge - 1, "same-hour"), (edge_hour - 1, "hour-before")):
        one(world.artifacts, ts, rid)
    service(world, now).prune_log("fraud", actor="op")
    assert kept(world.artifacts) == ["same-hour"]
    service(world, edge_hour + HOUR_MS + 30 * DAY_MS).prune_log("fraud", actor="op")
    assert kept(world.artifacts) == []


def test_legal_hold_stops_pruning_until_lifted(world: Stack) -> None:
    now = T0 + 100 * DAY_MS
    one(world.artifacts, T0, "old")
    svc = service(world, now)
    svc.set_log_policy("fraud", actor="legal", legal_hold=True)
    assert svc.prune_log("fraud", actor="op")[0].legal_hold
    assert kept(world.artifacts) == ["old"] and prune_events(world) == []
    svc.set_log_policy("fraud", actor="legal", legal_hold=False)
    svc.prune_log("fraud", actor="op")
    assert kept(world.artifacts) == []


def test_a_policy_changed_after_the_plan_is_refused_and_nothing_goes(world, monkeypatch):
    now = T0 + 100 * DAY_MS
    one(world.artifacts, T0, "old")
    svc = service(world, now)
    plan = predlog_retention.plan_prune

    def hold_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = plan(*args, **kwargs)
        svc.set_log_policy("fraud", actor="legal", legal_hold=True)
        return found

    monkeypatch.setattr(predlog_retention, "plan_prune", hold_meanwhile)
    from loopml.errors import Conflict

    with pytest.raises(Conflict, match="legal hold"):
        svc.prune_log("fraud", actor="op")
    assert kept(world.artifacts) == ["old"] and prune_events(world) == []


def test_every_prune_is_an_audit_event_with_hours_files_and_rows(world, monkeypatch):
    monkeypatch.setattr(predlog_retention, "HOURS_PER_EVENT", 2)
    store = world.artifacts
    for h in range(5):  # five old hours, two segments of 3 rows and one feedback each
        write(store, T0 + h * HOUR_MS, [3, 3])
    write(store, T0 + 60 * DAY_MS, [4])  # recent
    compact_hour(store, BASE, T0, now_ms=LATER)  # a compacted hour counts its rows once
    results = service(world, T0 + 61 * DAY_MS).prune_log("fraud", actor="op")
    assert [len(r.hours) for r in results] == [2, 2, 1]
    assert sum(r.rows["predictions"] for r in results) == 30
    assert sum(r.rows["feedback"] for r in results) == 10
    events = prune_events(world)
    assert [e.change["hours"] for e in events] == [r.hours for r in results]
    assert [e.change["rows"] for e in events] == [r.rows for r in results]
    assert [e.change["files"] for e in events] == [2 + 4, 4 + 4, 4]  # hour 1 compacted
    assert {e.actor for e in events} == {"op"}
    assert events[0].change["hours"][0] == "2023-11-14T23"
    assert events[0].change["retention_days"] == 30 and world.audit.verify().ok
    assert len(kept(store)) == 4
    assert not [d for d in store.list(BASE) if d.path.endswith("2023-11-14")]  # empty day gone


def test_the_floor_is_enforced_everywhere(world: Stack, tmp_path: Path) -> None:
    svc = service(world, T0, RetentionRules(default_days=30, floor_days=14))
    with pytest.raises(InvalidArgument, match="below this server's floor of 14 days"):
        svc.set_log_policy("fraud", actor="op", retention_days=13)
    assert svc.set_log_policy("fraud", actor="op", retention_days=14).retention_days == 14
    with pytest.raises(InvalidArgument, match="not both"):
        svc.set_log_policy("fraud", actor="op", retention_days=20, default_retention=True)
    # a floor raised later wins over what the deployment says
    raised = service(world, T0, RetentionRules(default_days=60, floor_days=21))
    assert raised.log_status("fraud").effective_retention_days == 21
    with pytest.raises(InvalidArgument, match="at least the floor"):
        RetentionRules(default_days=10, floor_days=20)
    with pytest.raises(InvalidArgument, match="at least the floor"):
        Stack.from_settings(
            Settings(home=tmp_path / "x", predlog_retention_days=30,
                     predlog_retention_floor_days=90)
        )  # fmt: skip
    events = world.audit.list_events(object_type="deployment", object_id="fraud")
    assert [e.change["retention_days"]["to"] for e in events if e.action ==
            "deployment.log_policy"] == [14]  # fmt: skip


def test_doctests() -> None:
    import doctest

    from loopml.serving import predlog, predlog_reader, predlog_records, predlog_stats

    for module in (predlog, predlog_reader, predlog_records, predlog_retention, predlog_stats):
        assert doctest.testmod(module).failed == 0, module.__name__
