"""The metadata contract suites on SQLite and PostgreSQL (see tests/conftest.py)."""

from loopml.testing.tracking_contract import (
    IdempotencyContract,
    ProjectStoreContract,
    TrackingStoreContract,
)


class TestSqlTrackingStore(TrackingStoreContract):
    pass


class TestSqlProjectStore(ProjectStoreContract):
    pass


class TestSqlIdempotency(IdempotencyContract):
    pass
