"""Composition root: build the stores once, from Settings, and hand them down."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopml.artifacts.store import ArtifactStore
    from loopml.governance.audit import AuditStore
    from loopml.projects.store import ProjectStore
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

    @classmethod
    def from_settings(cls, settings: Settings) -> Stack:
        from loopml.artifacts.factory import artifact_store_from_uri
        from loopml.backends.sql.audit import SqlAuditStore
        from loopml.backends.sql.engine import Database, make_engine
        from loopml.backends.sql.migrate import ensure_schema
        from loopml.backends.sql.projects import SqlProjectStore
        from loopml.backends.sql.tracking import SqlTrackingStore

        engine = make_engine(settings.resolved_uri())
        ensure_schema(engine)
        db = Database(engine)
        artifacts = artifact_store_from_uri(
            settings.resolved_artifacts(), s3_endpoint_url=settings.s3_endpoint_url
        )
        return cls(
            settings=settings,
            tracking=SqlTrackingStore(db),
            projects=SqlProjectStore(db),
            audit=SqlAuditStore(db),
            artifacts=artifacts,
            close=db.dispose,
        )
