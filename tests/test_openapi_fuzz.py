"""schemathesis over the OpenAPI spec: whatever a client sends, no 5xx, and every response
matches the schema the spec promises. One test per operation, 25 generated requests each."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings

from loopml.server.app import create_app
from loopml.settings import Settings
from loopml.stack import Stack

schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (the dev extra)")

_HOME = tempfile.mkdtemp(prefix="loopml-fuzz-")
_STACK = Stack.from_settings(Settings(home=_HOME))
# Something real to find besides random ids: an experiment, a run, an artifact.
_EXP = _STACK.tracking.create_experiment("fuzz", actor="t")
_RUN = _STACK.tracking.create_run(_EXP.experiment_id, run_name="r", user="u", start_time=1,
                                  actor="t")  # fmt: skip
_STACK.artifacts.put_bytes(b"hello", f"{_RUN.artifact_path}/a.txt")
from schemathesis.checks import (  # noqa: E402 - after the importorskip
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

SCHEMA = schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app(_STACK))
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    _STACK.close()
    shutil.rmtree(_HOME, ignore_errors=True)


def test_the_spec_covers_the_api():
    assert len(OPERATIONS) >= 30
    assert "POST /api/v1/runs/{run_id}/batch" in OPERATIONS


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_operation_never_errors_and_matches_its_schema(label):
    @given(case=OPERATIONS[label].as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case):
        # The bar: never a 5xx, responses (status, content type, body) as documented.
        # Not "positive data acceptance": a schema-valid request may still break a rule the
        # schema cannot say (a duplicate name, a filter's grammar) and get a documented 4xx.
        case.call_and_validate(
            checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                    response_schema_conformance]
        )  # fmt: skip

    check()
