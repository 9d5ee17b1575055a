"""The run-search filter language: parse_filter, to_text and parse_order_by."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from loopml.errors import InvalidArgument
from loopml.tracking import search
from loopml.tracking.search import (
    NUMERIC_ATTRIBUTES,
    STRING_ATTRIBUTES,
    And,
    Comparison,
    Expr,
    Not,
    Or,
    OrderKey,
    parse_filter,
    parse_order_by,
    to_text,
)


def m(key: str, op: str, value: object) -> Comparison:
    return Comparison("metric", key, op, value)  # type: ignore[arg-type]


def p(key: str, op: str, value: object) -> Comparison:
    return Comparison("param", key, op, value)  # type: ignore[arg-type]


def t(key: str, op: str, value: object) -> Comparison:
    return Comparison("tag", key, op, value)  # type: ignore[arg-type]


def a(key: str, op: str, value: object) -> Comparison:
    return Comparison("attribute", key, op, value)  # type: ignore[arg-type]


A, B, C, D = m("a", "=", 1.0), m("b", "=", 2.0), m("c", "=", 3.0), m("d", "=", 4.0)

# ------------------------------------------------------------------------------------ valid input

VALID: list[tuple[str, Expr]] = [
    # comparisons and operators
    ("metrics.acc > 0.9", m("acc", ">", 0.9)),
    ("metrics.acc>=0.9", m("acc", ">=", 0.9)),
    ("metrics.acc < -1", m("acc", "<", -1.0)),
    ("metrics.acc <= 1e-3", m("acc", "<=", 0.001)),
    ("metrics.acc = 1E+3", m("acc", "=", 1000.0)),
    ("metrics.acc = .5", m("acc", "=", 0.5)),
    ("metrics.acc = -.5", m("acc", "=", -0.5)),
    ("metrics.acc = 2.", m("acc", "=", 2.0)),
    ("metrics.acc != 3", m("acc", "!=", 3.0)),
    ("metrics.acc <> 3", m("acc", "!=", 3.0)),
    ("metrics.acc IN (1, 2.5, -3e2)", m("acc", "IN", (1.0, 2.5, -300.0))),
    ("metrics.acc not in (1)", m("acc", "NOT IN", (1.0,))),
    ("metrics.acc IS NULL", m("acc", "IS NULL", None)),
    ("metrics.acc is not null", m("acc", "IS NOT NULL", None)),
    ("params.model = 'cnn'", p("model", "=", "cnn")),
    ('params.model = "cnn"', p("model", "=", "cnn")),
    ("params.model != ''", p("model", "!=", "")),
    ("params.model LIKE 'c%'", p("model", "LIKE", "c%")),
    ("params.model ilike 'C%'", p("model", "ILIKE", "C%")),
    ("params.model NOT LIKE 'c%'", p("model", "NOT LIKE", "c%")),
    ("params.model not ILike 'c%'", p("model", "NOT ILIKE", "c%")),
    ("params.model IN ('a', \"b\")", p("model", "IN", ("a", "b"))),
    ("params.model NOT IN ('a')", p("model", "NOT IN", ("a",))),
    ("params.lr = '0.01'", p("lr", "=", "0.01")),
    ("tags.note = 'it''s'", t("note", "=", "it's")),
    ('tags.note = "say ""hi"""', t("note", "=", 'say "hi"')),
    ("tags.note IS NULL", t("note", "IS NULL", None)),
    ("tags.note = 'naïve ✓ 日本'", t("note", "=", "naïve ✓ 日本")),
    # entity prefixes and keys
    ("METRICS.acc = 1", m("acc", "=", 1.0)),
    ("metric.acc = 1", m("acc", "=", 1.0)),
    ("param.x = 'y'", p("x", "=", "y")),
    ("Parameters.x = 'y'", p("x", "=", "y")),
    ("tag.x = 'y'", t("x", "=", "y")),
    ("metrics.val.loss < 1", m("val.loss", "<", 1.0)),
    ("metrics.a-b/c:d_e = 1", m("a-b/c:d_e", "=", 1.0)),
    ("metrics.123 = 1", m("123", "=", 1.0)),
    ("metrics.`my metric` = 1", m("my metric", "=", 1.0)),
    ("metrics.`a``b` = 1", m("a`b", "=", 1.0)),
    ("params.\"a b\" = 'x'", p("a b", "=", "x")),
    ('params."say ""x""" = \'x\'', p('say "x"', "=", "x")),
    ("metrics.and = 1", m("and", "=", 1.0)),
    # attributes, aliases, status normalisation
    ("attributes.status = 'finished'", a("status", "=", "FINISHED")),
    ("attribute.STATUS != 'Failed'", a("status", "!=", "FAILED")),
    ("attr.status IN ('running', 'KILLED')", a("status", "IN", ("RUNNING", "KILLED"))),
    ("run.status LIKE 'fin%'", a("status", "LIKE", "fin%")),
    ("attributes.run_name = 'x'", a("run_name", "=", "x")),
    ("attributes.name = 'x'", a("run_name", "=", "x")),
    ("attributes.user_id = 'bob'", a("user", "=", "bob")),
    ("attributes.created > 5", a("start_time", ">", 5.0)),
    ("attributes.end_time IS NULL", a("end_time", "IS NULL", None)),
    ("attributes.cpu_seconds < 10", a("cpu_seconds", "<", 10.0)),
    ("attributes.peak_memory_bytes >= 1e9", a("peak_memory_bytes", ">=", 1e9)),
    ("attributes.lifecycle_stage = 'active'", a("lifecycle_stage", "=", "active")),
    ("attributes.git_commit LIKE 'abc%'", a("git_commit", "LIKE", "abc%")),
    # boolean structure
    ("metrics.a = 1 AND metrics.b = 2", And((A, B))),
    ("metrics.a = 1 and metrics.b = 2 AND metrics.c = 3", And((A, B, C))),
    ("metrics.a = 1 AND (metrics.b = 2 AND metrics.c = 3)", And((A, B, C))),
    ("(metrics.a = 1 AND metrics.b = 2) AND metrics.c = 3", And((A, B, C))),
    ("metrics.a = 1 OR metrics.b = 2 OR metrics.c = 3", Or((A, B, C))),
    ("metrics.a = 1 OR (metrics.b = 2 OR metrics.c = 3)", Or((A, B, C))),
    ("metrics.a = 1 OR metrics.b = 2 AND metrics.c = 3", Or((A, And((B, C))))),
    ("metrics.a = 1 AND metrics.b = 2 OR metrics.c = 3", Or((And((A, B)), C))),
    ("(metrics.a = 1 OR metrics.b = 2) AND metrics.c = 3", And((Or((A, B)), C))),
    ("NOT metrics.a = 1", Not(A)),
    ("not not metrics.a = 1", Not(Not(A))),
    ("NOT metrics.a = 1 AND metrics.b = 2", And((Not(A), B))),
    ("NOT (metrics.a = 1 AND metrics.b = 2)", Not(And((A, B)))),
    (
        "metrics.a = 1 AND NOT metrics.b = 2 OR NOT (metrics.c = 3 OR metrics.d = 4)",
        Or((And((A, Not(B))), Not(Or((C, D))))),
    ),
    ("((metrics.a = 1))", A),
    ("  \n\tmetrics.a = 1\n ", A),
    ("metrics.a=1 AND(metrics.b=2)", And((A, B))),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[text for text, _ in VALID])
def test_valid_filters(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[text for text, _ in VALID])
def test_to_text_round_trips_the_table(text: str, expected: Expr) -> None:
    canonical = to_text(expected)
    assert parse_filter(canonical) == expected
    assert to_text(parse_filter(canonical)) == canonical  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t "])
def test_empty_filter_is_no_filter(text: str | None) -> None:
    assert parse_filter(text) is None


def test_numbers_are_floats() -> None:
    expr = parse_filter("metrics.a IN (1, 2)")
    assert isinstance(expr, Comparison)
    assert all(type(v) is float for v in expr.value)  # type: ignore[union-attr]


def test_to_text_is_canonical() -> None:
    expr = parse_filter(
        "metric.`x y` in (1, 2) or (tags.t = 'a''b' and not attr.name like 'r%') and run.created>1"
    )
    assert to_text(expr) == (  # type: ignore[arg-type]
        "metrics.`x y` IN (1.0, 2.0) OR "
        "tags.t = 'a''b' AND NOT attributes.run_name LIKE 'r%' AND attributes.start_time > 1.0"
    )


def test_attribute_sets() -> None:
    assert {"start_time", "end_time", "cpu_seconds", "peak_memory_bytes"} == NUMERIC_ATTRIBUTES
    assert "status" in STRING_ATTRIBUTES
    assert "run_id" in STRING_ATTRIBUTES
    assert not NUMERIC_ATTRIBUTES & STRING_ATTRIBUTES


def test_module_docstring_examples() -> None:
    result = doctest.testmod(search)
    assert result.attempted > 0
    assert result.failed == 0


# ---------------------------------------------------------------------------------- syntax errors

INVALID: list[tuple[str, int, str]] = [
    ("metrics.acc > and", 15, "expected a value after '>'"),
    ("metrics.acc >", 14, "expected a value after '>'"),
    ("metrics.acc", 12, "expected an operator"),
    ("metrics", 8, "expected '.' and a key"),
    ("metrics.", 9, "expected a key after 'metrics.'"),
    ("metrics.`` = 1", 9, "must not be empty"),
    ("metrics. = 1", 10, "expected a key"),
    ("metrics.'a' = 1", 9, "expected a key"),
    ("acc > 1", 1, "expected <entity>.<key>"),
    ("status = 'x'", 1, "did you mean attributes.status?"),
    ("foo.acc > 1", 1, "expected <entity>.<key>"),
    ("= 1", 1, "expected a comparison"),
    ("metrics.a = 1 AND", 18, "expected a comparison"),
    ("metrics.a = 1 OR OR metrics.b = 2", 18, "expected a comparison"),
    ("AND metrics.a = 1", 1, "expected a comparison"),
    ("metrics.a = 1 metrics.b = 2", 15, "expected AND, OR or the end"),
    ("metrics.a = 1)", 14, "expected AND, OR or the end"),
    ("(metrics.a = 1", 15, "expected ')' to close '(' at position 1"),
    ("(metrics.a = 1 AND (metrics.b = 2)", 35, "expected ')' to close '(' at position 1"),
    ("()", 2, "expected a comparison"),
    ("NOT", 4, "expected a comparison"),
    ("metrics.a ! 1", 11, "unexpected character '!'"),
    ("metrics.a == 1", 12, "expected a value after '='"),
    ("metrics.a = 1 ; drop", 15, "unexpected character ';'"),
    ("metrics.a = 'abc", 13, "unterminated string"),
    ('params.a = "abc', 12, "unterminated string"),
    ("metrics.`abc = 1", 9, "unterminated quoted key"),
    ("metrics.a = 1.2.3", 13, "invalid number '1.2.3'"),
    ("metrics.a = 1e", 13, "invalid number '1e'"),
    ("metrics.a = 12abc", 13, "invalid number"),
    ("metrics.a = 1e999", 13, "out of range"),
    ("metrics.a = nan", 13, "expected a value after '='"),
    ("metrics.a IN 1", 14, "expected a parenthesised list"),
    ("metrics.a IN ()", 15, "expected a value after 'IN ('"),
    ("metrics.a IN (1,)", 17, "expected a value after ','"),
    ("metrics.a IN (1 2)", 17, "expected ',' or ')'"),
    ("metrics.a IN (1", 16, "expected ',' or ')'"),
    ("metrics.a NOT BETWEEN 1", 15, "expected LIKE, ILIKE or IN after NOT"),
    ("metrics.a IS 1", 14, "expected NULL after IS"),
    ("metrics.a IS NOT 1", 18, "expected NULL after IS NOT"),
    ("metrics.a LIKE", 11, "operator LIKE is not allowed"),
    ("params.a LIKE", 14, "expected a value after 'LIKE'"),
    ("params.a NOT LIKE", 18, "expected a value after 'NOT LIKE'"),
]


@pytest.mark.parametrize(
    ("text", "position", "fragment"), INVALID, ids=[text for text, _, _ in INVALID]
)
def test_syntax_errors_name_the_position(text: str, position: int, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter(text)
    error = info.value
    assert error.details == {"position": position}
    assert error.message.startswith(f"Invalid filter at position {position}: ")
    assert fragment in error.message
    # the snippet shows the filter and a caret under the offending character
    _, snippet, caret = error.message.rsplit("\n", 2)
    assert snippet == "  " + text
    assert caret == " " * (position + 1) + "^"


def test_error_message_format() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter("metrics.acc > and")
    assert str(info.value) == (
        "Invalid filter at position 15: expected a value after '>', got 'and'\n"
        "  metrics.acc > and\n"
        "                ^"
    )


def test_snippet_of_a_long_filter_is_a_window() -> None:
    text = " AND ".join(f"metrics.m{i} > {i}" for i in range(100)) + " AND metrics.x >"
    with pytest.raises(InvalidArgument) as info:
        parse_filter(text)
    position = info.value.details["position"]
    assert position == len(text) + 1
    _, snippet, caret = info.value.message.rsplit("\n", 2)
    assert snippet.startswith("  ...") and snippet.endswith("metrics.x >")
    assert len(caret) <= 80 and caret.endswith("^")
    assert len(caret) == len(snippet) + 1


def test_snippet_replaces_control_characters() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter("metrics.a = 1\nAND\tmetrics.b >")
    _, snippet, caret = info.value.message.rsplit("\n", 2)
    assert snippet == "  metrics.a = 1 AND metrics.b >"
    assert caret.index("^") == len(snippet)


def test_too_long_filter() -> None:
    with pytest.raises(InvalidArgument, match="limit is 10000"):
        parse_filter("metrics.a = 1" + " " * 10_000)


def test_non_string_filter() -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        parse_filter(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- nesting depth


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert parse_filter("(" * 50 + "metrics.a = 1" + ")" * 50) == A
    assert parse_filter("NOT " * 50 + "metrics.a = 1") is not None
    assert parse_filter("NOT (" * 25 + "metrics.a = 1" + ")" * 25) is not None


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("(" * 51 + "metrics.a = 1" + ")" * 51, 51),
        ("(" * 4_000 + "metrics.a = 1" + ")" * 4_000, 51),
        ("(" * 4_000, 51),
        ("NOT " * 2_000 + "metrics.a = 1", 201),
        ("NOT (" * 26 + "metrics.a = 1" + ")" * 26, 126),
    ],
    ids=["51-parens", "4000-parens", "unclosed", "2000-nots", "mixed"],
)
def test_too_deep_nesting_is_invalid_argument(text: str, position: int) -> None:
    with pytest.raises(InvalidArgument, match="nesting is deeper than 50") as info:
        parse_filter(text)
    assert info.value.details == {"position": position}


def test_ten_thousand_parentheses_is_invalid_argument_not_recursion_error() -> None:
    for text in ("(" * 10_000, "(" * 5_000 + ")" * 5_000, "(" * 9_990 + "metrics.a=1"[:10]):
        with pytest.raises(InvalidArgument):
            parse_filter(text)


# ------------------------------------------------------------------------------------- type rules

TYPE_ERRORS: list[tuple[str, list[str]]] = [
    ("metrics.acc LIKE '0.5'", ["operator LIKE is not allowed", "metrics.acc", "numeric"]),
    ("metrics.acc NOT ILIKE 'x'", ["operator NOT ILIKE is not allowed", "IN, NOT IN"]),
    ("metrics.acc = 'x'", ["metrics.acc", "compare it with a number", "'x'"]),
    ("metrics.acc = '0.5'", ["write 0.5 without quotes"]),
    ("metrics.acc IN (1, 'x')", ["metrics.acc", "compare it with a number"]),
    ("params.lr = 0.01", ["params.lr", "quote the value", "params.lr = '0.01'"]),
    ("params.lr != 1e-3", ["quote the value", "params.lr != '1e-3'"]),
    ("params.lr IN ('a', 2)", ["params.lr", "quote the value", "'2'"]),
    ("params.lr > '0.1'", ["operator > is not allowed", "params.lr", "strings", "LIKE"]),
    ("tags.t = 5", ["tags.t", "quote the value"]),
    ("tags.t <= 'a'", ["operator <= is not allowed", "tags.t"]),
    ("metrics.`my m` LIKE 'x'", ["metrics.`my m`"]),
    ("attributes.status = 'DONE'", ["invalid run status 'DONE'", "RUNNING", "KILLED"]),
    ("attributes.status IN ('RUNNING', 'nope')", ["invalid run status 'nope'"]),
    ("attributes.status = 1", ["attributes.status", "string attribute", "quote"]),
    ("attributes.start_time = 'yesterday'", ["attributes.start_time", "numeric attribute"]),
    ("attributes.end_time LIKE '1%'", ["operator LIKE is not allowed", "attributes.end_time"]),
    ("attributes.run_name < 'b'", ["operator < is not allowed", "attributes.run_name"]),
    (
        "attributes.artifact_uri = 'x'",
        ["unknown attribute 'artifact_uri'", "status", "start_time", "peak_memory_bytes"],
    ),
]


@pytest.mark.parametrize(("text", "fragments"), TYPE_ERRORS, ids=[text for text, _ in TYPE_ERRORS])
def test_type_rule_errors(text: str, fragments: list[str]) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter(text)
    assert info.value.message.startswith("Invalid filter at position ")
    assert "position" in info.value.details
    for fragment in fragments:
        assert fragment in info.value.message


def test_status_like_is_not_validated() -> None:
    assert parse_filter("attributes.status ILIKE 'fin%'") == a("status", "ILIKE", "fin%")
    assert parse_filter("attributes.status IS NULL") == a("status", "IS NULL", None)


# --------------------------------------------------------------------------------------- order_by

ORDER_BY: list[tuple[list[str], list[OrderKey]]] = [
    (["metrics.m1 DESC"], [OrderKey("metric", "m1", False)]),
    (["metrics.m1"], [OrderKey("metric", "m1", True)]),
    (["params.lr ASC"], [OrderKey("param", "lr", True)]),
    (["tags.team desc"], [OrderKey("tag", "team", False)]),
    (["attributes.start_time"], [OrderKey("attribute", "start_time", True)]),
    (["attr.created DESC"], [OrderKey("attribute", "start_time", False)]),
    (["run.name"], [OrderKey("attribute", "run_name", True)]),
    (["metrics.`val loss` DESC"], [OrderKey("metric", "val loss", False)]),
    (["metrics.val.loss  asc "], [OrderKey("metric", "val.loss", True)]),
    (
        ["metrics.a DESC", "params.b", "attributes.status ASC"],
        [
            OrderKey("metric", "a", False),
            OrderKey("param", "b", True),
            OrderKey("attribute", "status", True),
        ],
    ),
]


@pytest.mark.parametrize(("items", "expected"), ORDER_BY, ids=[i[0] for i, _ in ORDER_BY])
def test_order_by(items: list[str], expected: list[OrderKey]) -> None:
    assert parse_order_by(items) == expected


def test_order_by_empty() -> None:
    assert parse_order_by(None) == []
    assert parse_order_by([]) == []
    assert parse_order_by(()) == []


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("metrics.m1 DOWN", "expected ASC, DESC"),
        ("metrics.m1 DESC ASC", "expected ASC, DESC or the end"),
        ("m1", "expected <entity>.<key>"),
        ("metrics", "expected '.' and a key"),
        ("attributes.nope", "unknown attribute 'nope'"),
        ("", "expected e.g."),
        ("   ", "expected e.g."),
        ("metrics.`m", "unterminated quoted key"),
        ("metrics.a > 1", "expected ASC, DESC"),
    ],
)
def test_order_by_errors_name_the_item(item: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_order_by(["metrics.ok", item])
    assert f"Invalid order_by item {item!r}" in info.value.message
    assert fragment in info.value.message
    assert info.value.details["item"] == item


def test_order_by_limit() -> None:
    assert len(parse_order_by([f"metrics.m{i}" for i in range(10)])) == 10
    with pytest.raises(InvalidArgument, match="limit is 10"):
        parse_order_by([f"metrics.m{i}" for i in range(11)])


def test_order_by_rejects_a_bare_string() -> None:
    with pytest.raises(InvalidArgument, match="list of strings"):
        parse_order_by("metrics.m1")


# ------------------------------------------------------------------------------------- properties

_IDENT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-/:"
keys = st.one_of(
    st.text(alphabet=_IDENT, min_size=1, max_size=12),
    st.text(min_size=1, max_size=12),  # spaces, quotes, backticks, unicode
)
strings = st.text(max_size=12)
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**12), max_value=10**12).map(float),
)
_SCALAR_NUMERIC_OPS = ["=", "!=", "<", "<=", ">", ">="]
_SCALAR_STRING_OPS = ["=", "!=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"]
_NULL_OPS = ["IS NULL", "IS NOT NULL"]
_STATUSES = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]


@st.composite
def numeric_comparisons(draw: st.DrawFn, entity: str, key: str) -> Comparison:
    op = draw(st.sampled_from([*_SCALAR_NUMERIC_OPS, "IN", "NOT IN", *_NULL_OPS]))
    if op in _NULL_OPS:
        return Comparison(entity, key, op, None)  # type: ignore[arg-type]
    if op in ("IN", "NOT IN"):
        values = tuple(draw(st.lists(numbers, min_size=1, max_size=4)))
        return Comparison(entity, key, op, values)  # type: ignore[arg-type]
    return Comparison(entity, key, op, draw(numbers))  # type: ignore[arg-type]


@st.composite
def string_comparisons(draw: st.DrawFn, entity: str, key: str) -> Comparison:
    op = draw(st.sampled_from([*_SCALAR_STRING_OPS, "IN", "NOT IN", *_NULL_OPS]))
    status = key == "status" and op in ("=", "!=", "IN", "NOT IN")
    values = st.sampled_from(_STATUSES) if status else strings
    if op in _NULL_OPS:
        return Comparison(entity, key, op, None)  # type: ignore[arg-type]
    if op in ("IN", "NOT IN"):
        items = tuple(draw(st.lists(values, min_size=1, max_size=4)))
        return Comparison(entity, key, op, items)  # type: ignore[arg-type]
    return Comparison(entity, key, op, draw(values))  # type: ignore[arg-type]


@st.composite
def comparisons(draw: st.DrawFn) -> Comparison:
    entity = draw(st.sampled_from(["metric", "param", "tag", "attribute"]))
    if entity == "attribute":
        key = draw(st.sampled_from(sorted(NUMERIC_ATTRIBUTES | STRING_ATTRIBUTES)))
        numeric = key in NUMERIC_ATTRIBUTES
    else:
        key = draw(keys)
        numeric = entity == "metric"
    if numeric:
        return draw(numeric_comparisons(entity, key))
    return draw(string_comparisons(entity, key))


def _flat(kind: type[And] | type[Or], items: list[Expr]) -> Expr:
    flat: list[Expr] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    return kind(tuple(flat))


def expressions() -> st.SearchStrategy[Expr]:
    def extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
        many = st.lists(children, min_size=2, max_size=4)
        return st.one_of(
            many.map(lambda items: _flat(And, items)),
            many.map(lambda items: _flat(Or, items)),
            children.map(Not),
        )

    return st.recursive(comparisons(), extend, max_leaves=12)


def _depth(expr: Expr) -> int:
    if isinstance(expr, Comparison):
        return 0
    if isinstance(expr, Not):
        return 2 + _depth(expr.item)
    return 1 + max(_depth(item) for item in expr.items)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(expressions())
def test_round_trip_of_random_asts(expr: Expr) -> None:
    assume(_depth(expr) <= 50)
    text = to_text(expr)
    assert parse_filter(text) == expr
    assert to_text(parse_filter(text)) == text  # type: ignore[arg-type]


_FRAGMENTS = [
    "metrics.a", "params.b", "tags.c", "attributes.status", "attr.start_time", "metrics.`x y`",
    'params."q"', "metrics.", "status", "AND", "OR", "NOT", "(", ")", ",", "=", "!=", "<>", "<",
    "<=", ">", ">=", "LIKE", "ILIKE", "IN", "IS", "NULL", "1", "-2.5", "1e3", "1e", ".5", "'s'",
    "'it''s'", '"d"', "'", '"', "`", "''", "!", ";", "\n", "running", "'RUNNING'", "é",
]  # fmt: skip


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(max_size=80),
        st.lists(st.sampled_from(_FRAGMENTS), max_size=20).map(" ".join),
        st.lists(st.sampled_from(_FRAGMENTS), max_size=20).map("".join),
    )
)
def test_arbitrary_text_only_raises_invalid_argument(text: str) -> None:
    try:
        expr = parse_filter(text)
    except InvalidArgument as e:
        position = e.details.get("position")
        assert position is None or 1 <= position <= len(text) + 1
        return
    if expr is None:
        assert not text.strip()
        return
    assert isinstance(expr, Comparison | And | Or | Not)
    assert parse_filter(to_text(expr)) == expr


@settings(max_examples=200)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=6).map(" ".join))
def test_arbitrary_order_by_only_raises_invalid_argument(item: str) -> None:
    try:
        keys = parse_order_by([item])
    except InvalidArgument:
        return
    assert len(keys) == 1
