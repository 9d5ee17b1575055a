"""Checks on names and values before anything is written; each failure says what and why."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from loopml.errors import InvalidArgument
from loopml.tracking.entities import Metric

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_RUN_NAME_LENGTH = 250
MAX_BATCH_ITEMS = 100_000
_KEY = re.compile(r"^[A-Za-z0-9_\-./ :]+$")


@lru_cache(maxsize=4096)
def validate_key(key: str, kind: str = "metric") -> str:
    """Keys: 1-250 characters of letters, digits, ``_ - . / : `` and space; no ``..`` segment.

    Cached, so the hot logging path pays for each distinct key once.
    """
    if not isinstance(key, str):
        raise InvalidArgument(f"{kind} key must be a string, got {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(f"{kind} key must have 1 to {MAX_KEY_LENGTH} characters: {key!r}")
    if not _KEY.match(key):
        raise InvalidArgument(
            f"invalid {kind} key {key!r}: only letters, digits, spaces and '_-./:' are allowed"
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise InvalidArgument(f"invalid {kind} key {key!r}: no leading '/' or '..' segments")
    return key


def metric_value(value: Any, key: str) -> float:
    """A real number (int, float, numpy scalar); NaN and ±inf are kept as they are."""
    if isinstance(value, float):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(
            f"metric {key!r} must be a number, got {type(value).__name__} {value!r:.50}"
        )
    return float(value)


INT64 = range(-(2**63), 2**63)


def metric_step(step: Any, key: str) -> int:
    if type(step) is int and step in INT64:  # the common case, without the ABC check below
        return step
    if step is None:
        return 0
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or int(step) not in INT64:
        raise InvalidArgument(f"step of metric {key!r} must be a 64-bit integer, got {step!r:.50}")
    return int(step)


def metric_timestamp(timestamp: Any, key: str) -> int:
    """Milliseconds since the epoch, as a 64-bit integer."""
    if type(timestamp) is int and timestamp in INT64:
        return timestamp
    if (
        isinstance(timestamp, bool)
        or not isinstance(timestamp, numbers.Integral)
        or int(timestamp) not in INT64
    ):
        raise InvalidArgument(
            f"timestamp of metric {key!r} must be integer milliseconds, got {timestamp!r:.50}"
        )
    return int(timestamp)


def metric_records(metrics: Sequence[Any]) -> None:
    """Check a batch of :class:`Metric` records; whole columns at once in the common case.

    The same checks as ``validate_key``, ``metric_value``, ``metric_step`` and
    ``metric_timestamp`` on every record, with one pass per column instead of four calls per
    record.
    """
    for m in metrics:
        if not isinstance(m, Metric):
            raise InvalidArgument(f"log_batch metrics must be Metric records, got {m!r:.60}")
    for key in {m.key for m in metrics}:
        validate_key(key)
    if not all(type(m.value) is float for m in metrics):
        for m in metrics:
            metric_value(m.value, m.key)
    for column, check in (("step", metric_step), ("timestamp", metric_timestamp)):
        numbers_ = [getattr(m, column) for m in metrics]
        if not numbers_ or (
            all(type(n) is int for n in numbers_)
            and min(numbers_) >= INT64.start
            and max(numbers_) < INT64.stop
        ):
            continue
        for m, n in zip(metrics, numbers_, strict=True):
            check(n, m.key)


def param_value(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidArgument(
            f"param {key!r} value has {len(text)} characters; the limit is {MAX_PARAM_VALUE_LENGTH}"
        )
    return text


def tag_value(key: str, value: Any) -> str:
    if value is None:
        raise InvalidArgument(f"tag {key!r} needs a value (use delete_tag to remove it)")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TAG_VALUE_LENGTH:
        raise InvalidArgument(
            f"tag {key!r} value has {len(text)} characters; the limit is {MAX_TAG_VALUE_LENGTH}"
        )
    if "\x00" in text:
        raise InvalidArgument(f"tag {key!r} value contains a NUL character")
    return text


def run_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or len(name) > MAX_RUN_NAME_LENGTH or "\x00" in name:
        raise InvalidArgument(f"run name must be a string of at most {MAX_RUN_NAME_LENGTH} chars")
    return name


def experiment_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 256 or "\x00" in name:
        raise InvalidArgument(
            f"experiment name must be a non-empty string of at most 256 characters: {name!r:.60}"
        )
    return name
