"""The model registry on SQLite and PostgreSQL: the contract suite, approvals, concurrency."""

from __future__ import annotations

import pytest

from loopml.settings import Settings
from loopml.stack import Stack
from loopml.testing.registry_contract import RegistryContract


@pytest.fixture
def registry_stack(metadata_url, tmp_path):
    stack = Stack.from_settings(
        Settings(home=tmp_path / "home", uri=metadata_url, artifacts=(tmp_path / "a").as_uri())
    )
    yield stack
    stack.close()


class TestSqlRegistry(RegistryContract):
    pass
