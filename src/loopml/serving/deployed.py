"""A deployment as an inference server's :class:`~loopml.serving.modelset.ModelSet`.

The set serves a deployment's current routing: each request goes to one live target, drawn by
weight (or pinned by its routing key), and is mirrored to the shadows. A background thread
re-reads the deployment and its aliases every ``poll_s`` seconds; when the revision or an alias
changed, it loads the new versions *first* and then swaps one immutable snapshot in, so a change of
weights, a rollback or an alias move reaches a running server without a restart and without a
failed request (requests in flight finish on the snapshot they started with).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from loopml.errors import LoopmlError, NotFound
from loopml.serving.deployments import Deployment, Target, choose
from loopml.serving.modelset import PredictorLike, ServedModel

log = logging.getLogger("loopml.serving")

Fetch = Callable[[], Deployment]  # the deployment as stored now
Resolve = Callable[[Target], int]  # a target's version now (aliases followed)
Load = Callable[[str, int], PredictorLike]  # (model, version) -> predictor


@dataclass(frozen=True)
class _Snapshot:
    deployment: Deployment
    versions: dict[Target, int]  # each target's resolved version
    served: dict[tuple[str, int], ServedModel]

    def of(self, target: Target) -> ServedModel:
        return self.served[(target.model, self.versions[target])]


class DeploymentModelSet:
    def __init__(self, fetch: Fetch, resolve: Resolve, load: Load, *, poll_s: float = 1.0,
                 seed: int | None = None) -> None:  # fmt: skip
        self._fetch, self._resolve, self._load = fetch, resolve, load
        self._rng = random.Random(seed)  # noqa: S311 - traffic splitting, not security
        self._lock = threading.Lock()  # one refresh at a time
        self._snapshot = self._build(fetch(), None)
        self._stop = threading.Event()
        self._poll_s = poll_s
        self._thread: threading.Thread | None = None

    @property
    def deployment(self) -> Deployment:
        return self._snapshot.deployment

    @property
    def routing_header(self) -> str | None:
        """The request header whose value pins a caller to one target: the deployment's sticky
        key when it names a header (``X-…``); the server's ``X-Routing-Key`` otherwise."""
        key = self._snapshot.deployment.spec.sticky_key
        return key.lower() if key and key.lower().startswith("x-") else None

    def _build(self, deployment: Deployment, previous: _Snapshot | None) -> _Snapshot:
        versions = {t: self._resolve(t) for t in deployment.spec.targets}
        served: dict[tuple[str, int], ServedModel] = {}
        for target, version in versions.items():
            key = (target.model, version)
            if key in served:
                continue
            kept = previous.served.get(key) if previous is not None else None
            served[key] = kept or ServedModel(target.model, str(version), self._load(*key))
        return _Snapshot(deployment, versions, served)

    def refresh(self) -> bool:
        """Re-read the deployment and its aliases; True when the routing changed."""
        with self._lock:
            current = self._snapshot
            deployment = self._fetch()
            versions = {t: self._resolve(t) for t in deployment.spec.targets}
            if deployment.revision == current.deployment.revision and versions == current.versions:
                return False
            self._snapshot = self._build(deployment, current)  # loads new versions, then swaps
            log.info("deployment %s now at revision %d", deployment.name, deployment.revision)
            return True

    def start(self) -> None:
        """Follow the deployment in a background thread (``poll_s`` seconds apart)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._follow, name="deployment-follow",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.refresh()
            except LoopmlError as e:  # the store is away, or a bad change: keep serving
                log.warning("deployment refresh failed, still serving the last routing: %s", e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ModelSet ----------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted({t.model for t in self._snapshot.deployment.spec.targets})

    def served(self) -> list[ServedModel]:
        return [served for _, served in sorted(self._snapshot.served.items())]

    def get(self, name: str, version: str | None = None) -> ServedModel:
        snapshot = self._snapshot
        for (model, number), served in sorted(snapshot.served.items()):
            if model == name and version in (None, str(number)):
                if version is None:  # the live one of that name, if any
                    live = [t for t in snapshot.deployment.spec.live if t.model == name]
                    return snapshot.of(live[0]) if live else served
                return served
        raise NotFound(f"deployment {snapshot.deployment.name!r} serves no model {name!r}"
                       + (f" version {version}" if version else ""))  # fmt: skip

    def route(
        self, key: str | None, name: str | None = None
    ) -> tuple[ServedModel, list[ServedModel]]:
        snapshot = self._snapshot
        target, shadows = choose(snapshot.deployment.spec, key, self._rng)
        if name is not None and target.model != name:
            return self.get(name), []
        return snapshot.of(target), [snapshot.of(s) for s in shadows]

    def ready(self) -> bool:
        return True  # built only once every target was loaded
