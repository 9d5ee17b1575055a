"""Jinja filters that turn stored values into what a person reads (times, durations, numbers).

>>> when(0), duration(3725.0), number(0.912345678), number(3.0), size(2048)
('1970-01-01 00:00:00', '1 h 02 min', '0.912346', '3', '2.0 KiB')
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any


def when(ms: int | None) -> str:
    """Milliseconds since the epoch as UTC ``YYYY-MM-DD HH:MM:SS`` (the page's script localises)."""
    if ms is None:
        return "—"
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(ms)


def iso(ms: int | None) -> str:
    if ms is None:
        return ""
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return ""


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def number(value: Any) -> str:
    """Floats to six significant digits; whole numbers without a decimal point."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)


def size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def short(run_id: str | None, length: int = 8) -> str:
    return (run_id or "")[:length]


FILTERS = {
    "when": when,
    "iso": iso,
    "duration": duration,
    "number": number,
    "size": size,
    "short": short,
}
