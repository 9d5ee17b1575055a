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
