"""The HTTP backend passes the same contract suites, in-process (ASGI) and over real uvicorn."""

from __future__ import annotations

import pytest

from loopml.server.app import create_app
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.testing.registry_contract import RegistryContract
from loopml.testing.tracking_contract import ProjectStoreContract, TrackingStoreContract
from server_fixtures import in_process_stack, uvicorn_server


@pytest.fixture
def server_stack(tmp_path):
    stack = Stack.from_settings(Settings(home=tmp_path / "server"))
    yield stack
    stack.close()


@pytest.fixture
def remote(server_stack):
    stack, client = in_process_stack(server_stack)
    yield stack
    client.close()


@pytest.fixture(scope="module")
def live_remote(tmp_path_factory):
    """One real uvicorn on loopback for the module (the contract tests use unique names)."""
    server = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("live")))
    with uvicorn_server(create_app(server)) as url:
        stack = Stack.from_settings(Settings(uri=url))
        yield stack
        stack.close()
    server.close()


class _ServerRecordsItsCaller:
    def recorded_actor(self, actor: str) -> str:
        return Settings().resolved_user()  # auth off: every caller is the server's local user


class TestInProcessTracking(_ServerRecordsItsCaller, TrackingStoreContract):
    @pytest.fixture
    def tracking_store(self, remote):
        return remote.tracking

    @pytest.fixture
    def audit_store(self, remote):
        return remote.audit


class TestInProcessProjects(ProjectStoreContract):
    @pytest.fixture
    def tracking_store(self, remote):
        return remote.tracking

    @pytest.fixture
    def project_store(self, remote):
        return remote.projects


class TestLiveTracking(_ServerRecordsItsCaller, TrackingStoreContract):
    @pytest.fixture
    def tracking_store(self, live_remote):
        return live_remote.tracking

    @pytest.fixture
    def audit_store(self, live_remote):
        return live_remote.audit


class TestLiveProjects(ProjectStoreContract):
    @pytest.fixture
    def tracking_store(self, live_remote):
        return live_remote.tracking

    @pytest.fixture
    def project_store(self, live_remote):
        return live_remote.projects


class TestInProcessRegistry(RegistryContract):
    @pytest.fixture
    def registry_stack(self, remote):
        return remote


class TestLiveRegistry(RegistryContract):
    @pytest.fixture
    def registry_stack(self, live_remote):
        return live_remote
