"""Searching registered models and versions the way MLflow users write it.

A filter is comparisons joined by ``AND``: an attribute (``name``, ``run_id``, ``source``,
``tags.<key>``), an operator (``=``, ``!=``, ``LIKE``, ``ILIKE``) and a quoted string. Anything
else is refused with a message naming what is accepted, never guessed at. Results are ordered
(``order_by=["name ASC", "version_number DESC"]``) and paged by an offset token.

>>> f = parse_registry_filter("name LIKE 'fraud%' AND tags.team = 'risk'", ("name",))
>>> matches(f, {"name": "fraud-detector", "tags.team": "risk"}), matches(f, {"name": "churn"})
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from loopml.errors import InvalidArgument
from loopml.tracking.entities import Page

T = TypeVar("T")
MAX_FILTER_LENGTH = 4096
OPERATORS = ("=", "!=", "LIKE", "ILIKE")

_KEY = r"(?P<key>tags\.(?:`[^`]{1,250}`|[A-Za-z0-9_.\-:/]{1,250})|[A-Za-z_]+)"
_OP = r"(?P<op>!=|=|(?i:ilike)\b|(?i:like)\b)"
_VALUE = r"(?P<value>'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")"
_CLAUSE = re.compile(rf"\s*{_KEY}\s*{_OP}\s*{_VALUE}\s*")
_AND = re.compile(r"(?i:and)\b")


@dataclass(frozen=True, slots=True)
class Clause:
    key: str  # an attribute, or "tags.<key>"
    op: str  # one of OPERATORS
    value: str

    def test(self, actual: str | None) -> bool:
        if actual is None:
            return self.op == "!="
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        return _like(self.value, self.op == "ILIKE").fullmatch(actual) is not None


def _like(pattern: str, insensitive: bool) -> re.Pattern[str]:
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if insensitive else re.DOTALL)


def parse_registry_filter(text: str | None, attributes: Sequence[str]) -> tuple[Clause, ...]:
    """The comparisons of ``text`` (empty for None or blank), each on one of ``attributes`` or
    a tag; raises :class:`InvalidArgument` for anything else."""
    if text is None:
        return ()
    if not isinstance(text, str) or len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(f"a filter is a string of at most {MAX_FILTER_LENGTH} characters")
    if not text.strip():
        return ()
    accepted = ", ".join([*attributes, "tags.<key>"])
    clauses, pos = [], 0
    while True:
        m = _CLAUSE.match(text, pos)
        if m is None:
            raise InvalidArgument(
                f"cannot read the filter {text!r} at character {pos}: write comparisons such "
                f"as name = 'fraud' or name LIKE 'fraud%' joined by AND, on {accepted}, with "
                f"{', '.join(OPERATORS)} and a quoted value"
            )
        key = m["key"].replace("`", "")
        if not key.startswith("tags.") and key not in attributes:
            raise InvalidArgument(f"cannot filter on {key!r}: use {accepted}")
        quote = m["value"][0]
        value = m["value"][1:-1].replace(quote * 2, quote)
        clauses.append(Clause(key, m["op"].upper(), value))
        pos = m.end()
        if pos == len(text):
            return tuple(clauses)
        joined = _AND.match(text, pos)
        if joined is None:
            raise InvalidArgument(
                f"cannot read the filter {text!r} at character {pos}: only AND joins "
                "comparisons (no OR, IN or parentheses)"
            )
        pos = joined.end()


def matches(clauses: Sequence[Clause], values: Mapping[str, str | None]) -> bool:
    """Whether a record (its attributes and ``tags.<key>`` as strings) passes every clause."""
    return all(c.test(values.get(c.key)) for c in clauses)


def page_of(
    records: Sequence[T], *, order_by: Sequence[str] | None,
    orderings: Mapping[str, Callable[[T], object]], default: Sequence[str], max_results: int,
    page_token: str | None,
) -> Page[T]:  # fmt: skip
    """One page of ``records`` sorted by ``order_by`` (names from ``orderings``, each ``ASC``
    unless ``DESC``), starting where ``page_token`` says."""
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise InvalidArgument(f"max_results must be a positive integer, got {max_results!r}")
    start = _offset(page_token)
    ordered = list(records)
    if isinstance(order_by, str):
        raise InvalidArgument("order_by must be a list of strings, not a single string")
    for item in reversed([*(order_by or ()), *default]):  # stable sorts: last key first
        name, _, direction = str(item).strip().partition(" ")
        direction = direction.strip().upper() or "ASC"
        if name not in orderings or direction not in ("ASC", "DESC"):
            raise InvalidArgument(
                f"cannot order by {item!r}: use one of {', '.join(orderings)}, "
                "optionally followed by ASC or DESC"
            )
        ordered.sort(key=orderings[name], reverse=direction == "DESC")  # type: ignore[arg-type]
    end = start + max_results
    return Page(ordered[start:end], str(end) if end < len(ordered) else None)


def _offset(page_token: str | None) -> int:
    if page_token is None or page_token == "":
        return 0
    if not isinstance(page_token, str) or not page_token.isdigit() or len(page_token) > 18:
        raise InvalidArgument(f"invalid page_token {page_token!r}: pass one a search returned")
    return int(page_token)
