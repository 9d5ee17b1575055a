"""Which project a request touches, from its path: the scope of an authorization check.

Runs never change experiment and experiments never change project, so the answers are cached.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock

from fastapi import Request

from loopml.errors import Unavailable
from loopml.registry.api import ModelRegistry
from loopml.stack import Stack


class ProjectIndex:
    """Small LRU maps run → experiment → project, shared by the app's requests."""

    def __init__(self, stack: Stack, size: int = 100_000) -> None:
        self._stack = stack
        self._size = size
        self._lock = Lock()
        self._experiment_project: OrderedDict[str, str] = OrderedDict()
        self._run_experiment: OrderedDict[str, str] = OrderedDict()

    def _remember(self, cache: OrderedDict[str, str], key: str, value: str) -> str:
        with self._lock:
            cache[key] = value
            cache.move_to_end(key)
            while len(cache) > self._size:
                cache.popitem(last=False)
        return value

    def of_experiment(self, experiment_id: str) -> str:
        found = self._experiment_project.get(experiment_id)
        if found is not None:
            return found
        project = self._stack.tracking.get_experiment(experiment_id).project_id
        return self._remember(self._experiment_project, experiment_id, project)

    def of_run(self, run_id: str) -> str:
        experiment = self._run_experiment.get(run_id)
        if experiment is None:
            experiment = self._remember(
                self._run_experiment, run_id, self._stack.tracking.get_run(run_id).experiment_id
            )
        return self.of_experiment(experiment)

    def of_project(self, ref: str) -> str:
        return self._stack.projects.get_project(ref).project_id

    def of_model(self, name: str) -> str:
        """A registered model's project (looked up each time: listings must see new models)."""
        return registry_of(self._stack).get_registered_model(name).project_id

    def of_deployment(self, name: str) -> str:
        """A deployment's project (looked up each time: deployments come and go)."""
        if self._stack.deployments is None:
            raise Unavailable("this server has no deployments (they need the metadata database)")
        return self._stack.deployments.get_deployment(name).project_id


def stack_of(request: Request) -> Stack:
    """The stack the app serves (set by ``create_app``)."""
    stack: Stack = request.app.state.stack
    return stack


def registry_of(stack: Stack) -> ModelRegistry:
    if stack.registry is None:
        raise Unavailable("this server has no model registry (it needs the metadata database)")
    return stack.registry


def index_of(request: Request) -> ProjectIndex:
    index: ProjectIndex = request.app.state.projects_index
    return index


def run_scope(request: Request) -> str:
    return index_of(request).of_run(request.path_params["run_id"])


def model_scope(request: Request) -> str:
    return index_of(request).of_model(request.path_params["name"])


def deployment_scope(request: Request) -> str:
    return index_of(request).of_deployment(request.path_params["name"])


def experiment_scope(request: Request) -> str:
    return index_of(request).of_experiment(request.path_params["experiment_id"])


def project_scope(request: Request) -> str:
    return index_of(request).of_project(request.path_params["project"])
