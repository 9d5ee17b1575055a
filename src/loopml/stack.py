"""Composition root: build the stores once, from Settings, and hand them down."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.artifacts.store import ArtifactStore
    from loopml.backends.events import WebhookPublisher
    from loopml.governance.audit import AuditStore
    from loopml.governance.identity import IdentityStore
    from loopml.governance.sessions import SessionBackend
    from loopml.projects.store import ProjectStore
    from loopml.registry.api import ModelRegistry
    from loopml.serving.deployment_store import DeploymentRegistry
    from loopml.settings import Settings
    from loopml.tracking.store import TrackingStore


@dataclass
class Stack:
    """Everything a Client needs: metadata stores and the artifact store."""

    settings: Settings
    tracking: TrackingStore
    projects: ProjectStore
    audit: AuditStore
    artifacts: ArtifactStore
    close: Callable[[], None] = lambda: None  # releases connections (set by from_settings)
    identity: IdentityStore | None = None  # users and tokens: only where the database is
    sessions: SessionBackend | None = None  # browser sessions shared by server workers
    registry: ModelRegistry | None = None  # the model registry (its rules run where the DB is)
    webhooks: WebhookPublisher | None = None  # registry events to webhooks (``flush`` waits)
    deployments: DeploymentRegistry | None = None  # routing configs of served models

    @classmethod
    def from_settings(cls, settings: Settings) -> Stack:
        uri = settings.resolved_uri()
        if uri.startswith(("http://", "https://")):
            return cls.remote(settings)
        from loopml.artifacts.factory import artifact_store_from_uri
        from loopml.backends.events import WebhookPublisher
        from loopml.backends.outbound import AddressPolicy
        from loopml.backends.sql.audit import SqlAuditStore
        from loopml.backends.sql.engine import Database, make_engine
        from loopml.backends.sql.identity import SqlIdentityStore
        from loopml.backends.sql.migrate import ensure_schema
        from loopml.backends.sql.projects import SqlProjectStore
        from loopml.backends.sql.registry import SqlRegistryStore
        from loopml.backends.sql.sessions import SqlSessionBackend
        from loopml.backends.sql.tracking import SqlTrackingStore
        from loopml.registry.service import RegistryService

        engine = make_engine(uri)
        ensure_schema(engine)
        db = Database(engine)
        artifacts = artifact_store_from_uri(
            settings.resolved_artifacts(), s3_endpoint_url=settings.s3_endpoint_url
        )
        tracking, projects = SqlTrackingStore(db), SqlProjectStore(db)
        registry_store = SqlRegistryStore(db)
        webhooks = WebhookPublisher(
            registry_store, AddressPolicy(allow_private=settings.webhook_allow_private),
            settings.webhook_timeout,
        )  # fmt: skip

        def close() -> None:
            webhooks.close()
            db.dispose()

        stack = cls(
            settings=settings,
            tracking=tracking,
            projects=projects,
            audit=SqlAuditStore(db),
            artifacts=artifacts,
            close=close,
            identity=SqlIdentityStore(db),
            sessions=SqlSessionBackend(db),
            registry=RegistryService(
                registry_store,
                tracking,
                projects,
                artifacts,
                publish=webhooks,
                check_webhook_url=webhooks.check_url,
            ),
            webhooks=webhooks,
        )
        from loopml.backends.sql.deployments import SqlDeploymentStore
        from loopml.serving.deployment_service import DeploymentService

        assert stack.registry is not None
        from loopml.serving.predlog_records import RetentionRules

        retention = RetentionRules(
            settings.predlog_retention_days, settings.predlog_retention_floor_days
        )
        stack.deployments = DeploymentService(
            SqlDeploymentStore(db), stack.registry, artifacts=artifacts, retention=retention
        )
        return stack

    @classmethod
    def remote(cls, settings: Settings, *, http_client: Any = None) -> Stack:
        """Stores that speak to a loopml server (``LOOPML_URI=http(s)://…``).

        Artifacts go through the server too unless ``LOOPML_ARTIFACTS`` names a store directly.
        """
        from loopml.backends.http.artifacts import HttpArtifactStore
        from loopml.backends.http.deployments import HttpDeployments
        from loopml.backends.http.projects import HttpAuditStore, HttpProjectStore
        from loopml.backends.http.registry import HttpRegistry
        from loopml.backends.http.tracking import HttpTrackingStore
        from loopml.backends.http.transport import HttpTransport

        transport = HttpTransport(
            settings.resolved_uri().rstrip("/"), token=settings.token, client=http_client
        )
        artifacts: ArtifactStore
        if settings.artifacts:
            from loopml.artifacts.factory import artifact_store_from_uri

            artifacts = artifact_store_from_uri(
                settings.artifacts, s3_endpoint_url=settings.s3_endpoint_url
            )
        else:
            artifacts = HttpArtifactStore(transport)
        return cls(
            settings=settings,
            tracking=HttpTrackingStore(transport),
            projects=HttpProjectStore(transport),
            audit=HttpAuditStore(transport),
            artifacts=artifacts,
            close=transport.close,
            registry=HttpRegistry(transport),
            deployments=HttpDeployments(transport),
        )
