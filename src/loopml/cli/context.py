"""How CLI commands get their Client: built once per invocation from the settings."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopml.client import Client


@lru_cache(maxsize=1)
def get_client() -> Client:
    from loopml.client import Client

    return Client()


def reset_client() -> None:
    """Close the cached client (its connections) and forget it; the next command builds anew."""
    if get_client.cache_info().currsize:
        get_client().close()
    get_client.cache_clear()


def resolve_run_id(ref: str) -> str:
    """A full run id, or a unique prefix of one (at least 4 hex characters, as tables show)."""
    import re

    from loopml.errors import InvalidArgument, NotFound
    from loopml.tracking.entities import ViewType

    if len(ref) == 32 or not re.fullmatch(r"[0-9a-f]{4,31}", ref):
        return ref
    client = get_client()
    ids = [e.experiment_id for e in client.list_experiments(view=ViewType.ALL)]
    page = client.search_runs(
        ids, f"attributes.run_id LIKE '{ref}%'", max_results=2, view=ViewType.ALL
    )
    if not page.items:
        raise NotFound(f"no run id starts with {ref!r}")
    if len(page.items) > 1:
        raise InvalidArgument(f"run id prefix {ref!r} is ambiguous; give more characters")
    return page.items[0].run_id
