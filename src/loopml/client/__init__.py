"""The Client: one facade over every stage, each stage's calls in its own module.

``loopml.client.facade.Client`` is the class; the modules beside it hold the calls of one
stage each (``tracking``, ``projects``, ``models``, ``registry``) and never import the facade.
"""

from __future__ import annotations

from loopml.client.facade import Client

__all__ = ["Client"]
