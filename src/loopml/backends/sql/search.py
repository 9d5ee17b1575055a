"""Compile a parsed run filter and ordering into one SQL query with keyset pagination.

Filters never become SQL text: each comparison is an ``EXISTS`` over the row of that key (an index
lookup on ``(run_id, key)``), combined with AND/OR/NOT. Ordering is a list of terms ending with
``run_id``, so every row has a unique position and the next page starts strictly after the last row
of this one (keyset pagination: a page costs the same at any depth).

When the first order key is a metric, the query walks ``latest_metrics`` in index order
``(experiment_id, key, value, run_id)`` and stops after ``max_results`` matches, so its cost depends
on how selective the filter is, not on how many runs exist. Runs without that metric (or with NaN)
come after all runs that have it, in a second phase of the same pagination.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.schema import latest_metrics, params, runs, tags
from loopml.errors import InvalidArgument
from loopml.tracking.entities import ViewType
from loopml.tracking.search import And, Comparison, Expr, Not, Or, OrderKey, parse_filter
from loopml.tracking.search import parse_order_by as parse_order_keys

MAX_RESULTS_LIMIT = 50_000
_KV_TABLES = {"metric": latest_metrics, "param": params, "tag": tags}
_ATTRIBUTE_COLUMNS = {
    "status": runs.c.status,
    "run_name": runs.c.run_name,
    "run_id": runs.c.run_id,
    "user": runs.c.user,
    "parent_run_id": runs.c.parent_run_id,
    "source": runs.c.source,
    "git_commit": runs.c.git_commit,
    "lifecycle_stage": runs.c.lifecycle_stage,
    "start_time": runs.c.start_time,
    "end_time": runs.c.end_time,
    "cpu_seconds": runs.c.cpu_seconds,
    "peak_memory_bytes": runs.c.peak_memory_bytes,
}


@dataclass(frozen=True)
class _Term:
    expr: Any  # SQL expression
    ascending: bool
    nullable: bool


def _compare(column: Any, op: str, value: Any) -> Any:
    match op:
        case "=":
            return column == value
        case "!=":
            return column != value
        case "<":
            return column < value
        case "<=":
            return column <= value
        case ">":
            return column > value
        case ">=":
            return column >= value
        case "LIKE":
            return column.like(value)
        case "NOT LIKE":
            return column.not_like(value)
        case "ILIKE":
            return sa.func.lower(column).like(sa.func.lower(sa.literal(value)))
        case "NOT ILIKE":
            return sa.func.lower(column).not_like(sa.func.lower(sa.literal(value)))
        case "IN":
            return column.in_(list(value))
        case "NOT IN":
            return column.not_in(list(value))
    raise InvalidArgument(f"unsupported operator {op!r}")


def _condition(expr: Expr) -> Any:
    if isinstance(expr, And):
        return sa.and_(*(_condition(e) for e in expr.items))
    if isinstance(expr, Or):
        return sa.or_(*(_condition(e) for e in expr.items))
    if isinstance(expr, Not):
        return sa.not_(_condition(expr.item))
    return _comparison(expr)


def _comparison(c: Comparison) -> Any:
    if c.entity == "attribute":
        column = _ATTRIBUTE_COLUMNS[c.key]
        if c.op == "IS NULL":
            return column.is_(None)
        if c.op == "IS NOT NULL":
            return column.is_not(None)
        return _compare(column, c.op, c.value)
    # An alias: the outer query may itself read latest_metrics (ordering by a metric), and a
    # subquery on the bare table would silently correlate to it.
    table = _KV_TABLES[c.entity].alias()
    row = sa.select(sa.literal(1)).where(table.c.run_id == runs.c.run_id, table.c.key == c.key)
    if c.op == "IS NULL":
        return ~row.exists()
    if c.op == "IS NOT NULL":
        return row.exists()
    return row.where(_compare(table.c.value, c.op, c.value)).exists()


def _order_term(key: OrderKey) -> _Term:
    if key.entity == "attribute":
        column = _ATTRIBUTE_COLUMNS[key.key]
        return _Term(column, key.ascending, bool(column.nullable))
    table = _KV_TABLES[key.entity].alias()
    value = (
        sa.select(table.c.value)
        .where(table.c.run_id == runs.c.run_id, table.c.key == key.key)
        .scalar_subquery()
    )
    return _Term(value, key.ascending, True)


def _after(terms: Sequence[_Term], last: Sequence[Any]) -> Any:
    """Rows strictly after ``last`` in the order of ``terms`` (NULLs sort last either way)."""
    clauses = []
    equal_so_far: list[Any] = []
    for term, value in zip(terms, last, strict=True):
        col = term.expr
        after: Any
        if value is None:
            after = sa.false()
            equal = col.is_(None)
        else:
            after = col > value if term.ascending else col < value
            if term.nullable:
                after = sa.or_(after, col.is_(None))
            equal = col == value
        clauses.append(sa.and_(*equal_so_far, after))
        equal_so_far.append(equal)
    return sa.or_(*clauses)


def _order_clause(term: _Term) -> list[Any]:
    parts = [term.expr.is_(None)] if term.nullable else []
    parts.append(term.expr.asc() if term.ascending else term.expr.desc())
    return parts


class _Token:
    """Opaque page token: phase, the last row's sort values, and a fingerprint of the query."""

    @staticmethod
    def encode(phase: int, values: Sequence[Any], fingerprint: str) -> str:
        raw = json.dumps({"p": phase, "v": list(values), "q": fingerprint}).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @staticmethod
    def decode(token: str, fingerprint: str) -> tuple[int, list[Any]]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            phase, values, fp = data["p"], data["v"], data["q"]
            ok = phase in (0, 1) and isinstance(values, list)
            ok = ok and all(v is None or isinstance(v, str | int | float) for v in values)
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgument("invalid page token") from e
        if not ok:
            raise InvalidArgument("invalid page token")
        if fp != fingerprint:
            raise InvalidArgument("page token belongs to a different search")
        return phase, values


@dataclass
class SearchPlan:
    experiment_ids: list[int]
    where: list[Any]
    order_keys: list[OrderKey]
    max_results: int
    token: tuple[int, list[Any]] | None
    fingerprint: str

    def execute(self, conn: Connection) -> tuple[list[Any], str | None]:
        phase, last = self.token if self.token else (0, None)
        lead = self.order_keys[0] if self.order_keys else None
        if lead is not None and lead.entity == "metric":
            rows: list[Any] = []
            if phase == 0:
                rows = self._metric_phase(conn, lead, last)
                if len(rows) > self.max_results:
                    return self._page(rows, 0)
                last = None
            need = self.max_results - len(rows)
            rest = self._plain_phase(conn, self._terms(self.order_keys[1:], lead.ascending), last,
                                     need, extra=[~self._has_metric(lead.key)])  # fmt: skip
            return self._page(rows + rest, 1, first_phase_count=len(rows))
        terms = self._terms(self.order_keys, True)
        return self._page(self._plain_phase(conn, terms, last, self.max_results), 0)

    def _page(
        self, rows: list[Any], phase: int, first_phase_count: int | None = None
    ) -> tuple[list[Any], str | None]:
        if len(rows) <= self.max_results:
            return [r.row for r in rows], None
        rows = rows[: self.max_results]
        last = rows[-1]
        if first_phase_count is not None and len(rows) <= first_phase_count:
            phase = 0
        token = _Token.encode(phase, list(last.sort_values), self.fingerprint)
        return [r.row for r in rows], token

    def _terms(self, keys: Sequence[OrderKey], tiebreak_ascending: bool) -> list[_Term]:
        terms = [_order_term(k) for k in keys]
        if not keys:
            terms = [_Term(runs.c.start_time, False, False)]
            tiebreak_ascending = False
        return [*terms, _Term(runs.c.run_id, tiebreak_ascending, False)]

    def _base(self) -> sa.Select[Any]:
        return sa.select(runs).where(runs.c.experiment_id.in_(self.experiment_ids), *self.where)

    def _metric_phase(self, conn: Connection, lead: OrderKey, last: list[Any] | None) -> list[Any]:
        lm = latest_metrics
        terms = [_Term(lm.c.value, lead.ascending, False)]
        terms += [_order_term(k) for k in self.order_keys[1:]]
        terms.append(_Term(lm.c.run_id, lead.ascending, False))
        q = (
            sa.select(runs, *[t.expr.label(f"_s{i}") for i, t in enumerate(terms)])
            .select_from(lm.join(runs, runs.c.run_id == lm.c.run_id))
            .where(
                lm.c.experiment_id.in_(self.experiment_ids),
                lm.c.key == lead.key,
                lm.c.value.is_not(None),
                runs.c.experiment_id.in_(self.experiment_ids),
                *self.where,
            )
        )
        if last is not None:
            q = q.where(_after(terms, _check_arity(last, terms)))
        q = q.order_by(*[c for t in terms for c in _order_clause(t)]).limit(self.max_results + 1)
        return _with_sort_values(conn.execute(q).all(), len(terms))

    def _plain_phase(
        self,
        conn: Connection,
        terms: list[_Term],
        last: list[Any] | None,
        limit: int,
        extra: Sequence[Any] = (),
    ) -> list[Any]:
        if limit <= 0:
            return []
        q = self._base().add_columns(*[t.expr.label(f"_s{i}") for i, t in enumerate(terms)])
        q = q.where(*extra)
        if last is not None:
            q = q.where(_after(terms, _check_arity(last, terms)))
        q = q.order_by(*[c for t in terms for c in _order_clause(t)]).limit(limit + 1)
        return _with_sort_values(conn.execute(q).all(), len(terms))

    @staticmethod
    def _has_metric(key: str) -> Any:
        lm = latest_metrics.alias()
        return (
            sa.select(sa.literal(1))
            .where(lm.c.run_id == runs.c.run_id, lm.c.key == key, lm.c.value.is_not(None))
            .exists()
        )


@dataclass(frozen=True)
class _Row:
    row: Any
    sort_values: tuple[Any, ...]


def _with_sort_values(rows: Sequence[Any], n_terms: int) -> list[Any]:
    n_run_cols = len(runs.c)
    out = []
    for r in rows:
        values = tuple(r[n_run_cols : n_run_cols + n_terms])
        out.append(_Row(r, values))
    return out


def _check_arity(last: list[Any], terms: Sequence[_Term]) -> list[Any]:
    if len(last) != len(terms):
        raise InvalidArgument("invalid page token")
    return last


def plan_search(
    experiment_ids: list[int],
    filter_string: str | None,
    order_by: Sequence[str] | None,
    max_results: int,
    page_token: str | None,
    view: ViewType,
) -> SearchPlan:
    if not experiment_ids:
        raise InvalidArgument("search needs at least one experiment id")
    if isinstance(max_results, bool) or not 1 <= max_results <= MAX_RESULTS_LIMIT:
        raise InvalidArgument(f"max_results must be between 1 and {MAX_RESULTS_LIMIT}")
    expr = parse_filter(filter_string)
    keys = parse_order_keys(order_by)
    where: list[Any] = []
    if view is ViewType.ACTIVE_ONLY:
        where.append(runs.c.lifecycle_stage == "active")
    elif view is ViewType.DELETED_ONLY:
        where.append(runs.c.lifecycle_stage == "deleted")
    if expr is not None:
        where.append(_condition(expr))
    fingerprint = hashlib.sha256(
        json.dumps(
            [sorted(experiment_ids), filter_string or "", list(order_by or []), view.value]
        ).encode()
    ).hexdigest()[:16]
    token = _Token.decode(page_token, fingerprint) if page_token else None
    return SearchPlan(sorted(set(experiment_ids)), where, keys, max_results, token, fingerprint)
