"""One error hierarchy for all of loopml.

Every seam translates the errors of its technology into these (``raise ... from e``). HTTP status
codes live only in the server edge.
"""

from __future__ import annotations

from typing import Any


class LoopmlError(Exception):
    """Base class of every error loopml raises on purpose."""

    code = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class NotFound(LoopmlError):
    code = "not_found"


class AlreadyExists(LoopmlError):
    code = "already_exists"


class InvalidArgument(LoopmlError):
    code = "invalid_argument"


class Conflict(LoopmlError):
    code = "conflict"


class PermissionDenied(LoopmlError):
    code = "permission_denied"


class Unauthenticated(LoopmlError):
    """No valid credentials were presented."""

    code = "unauthenticated"


class TooLarge(LoopmlError):
    code = "too_large"


class TooManyAttempts(LoopmlError):
    """Refused for now (too many failed sign-ins); ``retry_after_seconds`` says for how long."""

    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message, details={"retry_after_seconds": retry_after_seconds})
        self.retry_after_seconds = retry_after_seconds


class ValidationFailed(LoopmlError):
    code = "validation_failed"


class Unavailable(LoopmlError):
    code = "unavailable"


class IntegrityError(LoopmlError):
    """Stored data does not match its recorded digest or chain."""

    code = "integrity"


class MissingDependency(LoopmlError):
    """An optional dependency is not installed; the message says how to install it."""

    code = "missing_dependency"


def require(module: str, extra: str) -> Any:
    """Import an optional dependency, or raise a clear install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"{module!r} is not installed; install it with: pip install 'loopml[{extra}]'"
        ) from e
