"""The run-search filter language: a tokenizer and a recursive-descent parser (no database code).

A filter is text such as ``metrics.acc > 0.9 AND params.model = 'cnn'``; :func:`parse_filter`
turns it into a small immutable AST (:class:`Comparison`, :class:`And`, :class:`Or`,
:class:`Not`) that a backend compiles to its own query language, and :func:`to_text` prints an
AST back as canonical text. :func:`parse_order_by` parses ``order_by`` items.

Grammar (keywords are case-insensitive; AND binds tighter than OR, NOT tighter than AND)::

    filter     := or_expr EOF
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := not_expr ("AND" not_expr)*
    not_expr   := "NOT" not_expr | "(" or_expr ")" | comparison
    comparison := ref ( cmp_op literal
                      | ["NOT"] ("LIKE" | "ILIKE") string
                      | ["NOT"] "IN" "(" literal ("," literal)* ")"
                      | "IS" ["NOT"] "NULL" )
    cmp_op     := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    ref        := entity "." (bare_key | `quoted key` | "quoted key")
    entity     := metrics | metric | params | param | parameters | tags | tag
                | attributes | attribute | attr | run
    bare_key   := one or more of [A-Za-z0-9_.\\-/:]     (``metrics.val.loss`` has key ``val.loss``)
    literal    := string | number
    string     := '...' | "..."                   (a doubled quote inside escapes it: 'it''s')
    number     := ["-"] digits ["." digits] [("e" | "E") ["+" | "-"] digits]

Type rules: metrics and the numeric attributes (``start_time``, ``end_time``, ``cpu_seconds``,
``peak_memory_bytes``) compare with numbers (``= != < <= > >=``, ``IN``, ``NOT IN``); params, tags
and the string attributes compare with strings (``= != LIKE ILIKE NOT LIKE NOT ILIKE IN NOT IN``).
Everything supports ``IS NULL`` / ``IS NOT NULL``. Numbers in the AST are always ``float``.
Every error is an :class:`~loopml.errors.InvalidArgument` whose message names the 1-based
position and shows a caret under it, with ``details={"position": n}``.

>>> parse_filter("metrics.acc > 0.9 AND params.model = 'cnn'")
And(items=(Comparison(entity='metric', key='acc', op='>', value=0.9), \
Comparison(entity='param', key='model', op='=', value='cnn')))
>>> to_text(parse_filter("attr.name like 'exp%' or not metrics.`my loss` in (1, 2)"))
"attributes.run_name LIKE 'exp%' OR NOT metrics.`my loss` IN (1.0, 2.0)"
>>> parse_order_by(["metrics.acc DESC"])
[OrderKey(entity='metric', key='acc', ascending=False)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from loopml.errors import InvalidArgument
from loopml.tracking.entities import RunStatus

__all__ = [
    "NUMERIC_ATTRIBUTES",
    "STRING_ATTRIBUTES",
    "And",
    "Comparison",
    "Expr",
    "Not",
    "Or",
    "OrderKey",
    "parse_filter",
    "parse_order_by",
    "to_text",
]

Entity: TypeAlias = Literal["metric", "param", "tag", "attribute"]
Value: TypeAlias = float | str | tuple[float, ...] | tuple[str, ...] | None

MAX_FILTER_LENGTH = 10_000
MAX_DEPTH = 50
MAX_ORDER_BY_KEYS = 10

NUMERIC_ATTRIBUTES: frozenset[str] = frozenset(
    {"start_time", "end_time", "cpu_seconds", "peak_memory_bytes"}
)
STRING_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "status",
        "run_name",
        "run_id",
        "user",
        "parent_run_id",
        "source",
        "git_commit",
        "lifecycle_stage",
    }
)
ATTRIBUTE_ALIASES: dict[str, str] = {"name": "run_name", "created": "start_time", "user_id": "user"}
RUN_STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus)

_ENTITIES: dict[str, Entity] = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "parameters": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_CANONICAL_PREFIX: dict[Entity, str] = {
    "metric": "metrics",
    "param": "params",
    "tag": "tags",
    "attribute": "attributes",
}

_NUMERIC_OPS: tuple[str, ...] = (
    "=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN", "IS NULL", "IS NOT NULL",
)  # fmt: skip
_STRING_OPS: tuple[str, ...] = (
    "=", "!=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL",
)  # fmt: skip
_SYMBOL_OPS: dict[str, str] = {
    "=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
}  # fmt: skip
_IDENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-/:")
_DIGITS = frozenset("0123456789")
_RESERVED = frozenset({"and", "or", "not", "like", "ilike", "in", "is", "null", "asc", "desc"})


# --------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Comparison:
    """``<entity>.<key> <op> <value>``; ``value`` is None for IS [NOT] NULL, numbers are float."""

    entity: Entity
    key: str  # the canonical attribute name for attributes
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr: TypeAlias = Comparison | And | Or | Not


@dataclass(frozen=True, slots=True)
class OrderKey:
    entity: Entity
    key: str
    ascending: bool


# ------------------------------------------------------------------------------------------ errors


class _SyntaxError(Exception):
    """Internal: a problem at a 0-based offset; converted to InvalidArgument at the API edge."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def _snippet(text: str, offset: int, width: int = 60) -> str:
    """Two indented lines: a window of ``text`` around ``offset`` and a caret under it."""
    start = max(0, offset - width)
    end = min(len(text), offset + width)
    prefix = "..." if start > 0 else ""
    suffix = "..." if end < len(text) else ""
    window = "".join(c if c.isprintable() else " " for c in text[start:end])
    caret = " " * (len(prefix) + offset - start) + "^"
    return f"  {prefix}{window}{suffix}\n  {caret}"


def _invalid(label: str, text: str, err: _SyntaxError) -> InvalidArgument:
    position = err.offset + 1
    message = f"{label} at position {position}: {err.message}\n{_snippet(text, err.offset)}"
    return InvalidArgument(message, details={"position": position})


# ---------------------------------------------------------------------------------------- tokenizer


TokenKind: TypeAlias = Literal[
    "word", "number", "string", "dquoted", "backtick", "op", "(", ")", ",", "eof"
]
_PUNCTUATION: dict[str, TokenKind] = {"(": "(", ")": ")", ",": ","}
_QUOTES: dict[str, TokenKind] = {"'": "string", '"': "dquoted", "`": "backtick"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: TokenKind
    text: str  # the source text of the token
    value: str  # decoded content for quoted tokens, else the source text
    offset: int

    def describe(self) -> str:
        if self.kind == "eof":
            return "the end of the filter"
        return repr(self.text if len(self.text) <= 40 else self.text[:37] + "...")

    def is_keyword(self, word: str) -> bool:
        return self.kind == "word" and self.text.lower() == word


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def tokens(self) -> list[_Token]:
        result: list[_Token] = []
        while True:
            token = self._next()
            result.append(token)
            if token.kind == "eof":
                return result

    def _peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.text[i] if i < len(self.text) else ""

    def _next(self) -> _Token:
        while self._peek().isspace():
            self.pos += 1
        start, ch = self.pos, self._peek()
        if not ch:
            return _Token("eof", "", "", start)
        if ch in _PUNCTUATION:
            self.pos += 1
            return _Token(_PUNCTUATION[ch], ch, ch, start)
        if ch in _QUOTES:
            return self._quoted(ch)
        if ch in "=!<>":
            return self._symbol()
        if self._starts_number():
            return self._number()
        if ch in _IDENT_CHARS:
            return self._word()
        raise _SyntaxError(f"unexpected character {ch!r}", start)

    def _starts_number(self) -> bool:
        ch, nxt = self._peek(), self._peek(1)
        if ch in _DIGITS:
            return True
        if ch == ".":
            return nxt in _DIGITS
        if ch == "-":
            return nxt in _DIGITS or (nxt == "." and self._peek(2) in _DIGITS)
        return False

    def _digits(self) -> int:
        start = self.pos
        while self._peek() in _DIGITS:
            self.pos += 1
        return self.pos - start

    def _number(self) -> _Token:
        start = self.pos
        if self._peek() == "-":
            self.pos += 1
        self._digits()
        if self._peek() == ".":
            self.pos += 1
            self._digits()
        self._exponent()
        text = self.text[start : self.pos]
        if self._peek() in _IDENT_CHARS:
            while self._peek() in _IDENT_CHARS:
                self.pos += 1
            raise _SyntaxError(f"invalid number {self.text[start : self.pos]!r}", start)
        return _Token("number", text, text, start)

    def _exponent(self) -> None:
        if self._peek() not in ("e", "E"):
            return
        sign = 1 if self._peek(1) in ("+", "-") else 0
        if self._peek(1 + sign) in _DIGITS:
            self.pos += 1 + sign
            self._digits()

    def _word(self) -> _Token:
        start = self.pos
        while self._peek() in _IDENT_CHARS:
            self.pos += 1
        text = self.text[start : self.pos]
        return _Token("word", text, text, start)

    def _symbol(self) -> _Token:
        start = self.pos
        two = self.text[start : start + 2]
        text = two if two in _SYMBOL_OPS else self.text[start]
        if text not in _SYMBOL_OPS:
            raise _SyntaxError(f"unexpected character {text!r} (did you mean '!='?)", start)
        self.pos += len(text)
        return _Token("op", text, _SYMBOL_OPS[text], start)

    def _quoted(self, quote: str) -> _Token:
        start = self.pos
        self.pos += 1
        parts: list[str] = []
        while True:
            end = self.text.find(quote, self.pos)
            if end < 0:
                what = "quoted key" if quote == "`" else "string"
                raise _SyntaxError(f"unterminated {what} (missing closing {quote})", start)
            parts.append(self.text[self.pos : end])
            self.pos = end + 1
            if self._peek() != quote:
                break
            parts.append(quote)  # a doubled quote is an escaped quote
            self.pos += 1
        return _Token(_QUOTES[quote], self.text[start : self.pos], "".join(parts), start)


# ------------------------------------------------------------------------------------------ parser


@dataclass(frozen=True, slots=True)
class _Literal:
    value: float | str
    token: _Token


@dataclass(frozen=True, slots=True)
class _Ref:
    entity: Entity
    key: str
    offset: int


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _Lexer(text).tokens()
        self.index = 0
        self.depth = 0

    # -- token helpers

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def _accept_keyword(self, word: str) -> _Token | None:
        if self.current.is_keyword(word):
            return self.advance()
        return None

    def fail(self, message: str, token: _Token | None = None) -> _SyntaxError:
        token = token or self.current
        return _SyntaxError(f"{message}, got {token.describe()}", token.offset)

    def _enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _SyntaxError(
                f"nesting is deeper than {MAX_DEPTH} levels of parentheses and NOT", token.offset
            )

    # -- boolean structure

    def parse(self) -> Expr:
        expr = self._or()
        if self.current.kind != "eof":
            raise self.fail("expected AND, OR or the end of the filter")
        return expr

    def _or(self) -> Expr:
        items = [self._and()]
        while self._accept_keyword("or"):
            items.append(self._and())
        return _combine(Or, items)

    def _and(self) -> Expr:
        items = [self._not()]
        while self._accept_keyword("and"):
            items.append(self._not())
        return _combine(And, items)

    def _not(self) -> Expr:
        token = self.current
        if token.is_keyword("not"):
            self.advance()
            self._enter(token)
            item = self._not()
            self.depth -= 1
            return Not(item)
        if token.kind == "(":
            return self._group()
        return self._comparison()

    def _group(self) -> Expr:
        opening = self.advance()
        self._enter(opening)
        expr = self._or()
        if self.current.kind != ")":
            raise self.fail(f"expected ')' to close '(' at position {opening.offset + 1}")
        self.advance()
        self.depth -= 1
        return expr

    # -- comparisons

    def _comparison(self) -> Comparison:
        ref = self.ref("a comparison such as metrics.acc > 0.9")
        op, op_token = self._operator()
        if op in ("IS NULL", "IS NOT NULL"):
            return Comparison(ref.entity, ref.key, op, None)
        _check_operator(ref, op, op_token)
        shown = op_token.text if op_token.kind == "op" else op
        if op in ("IN", "NOT IN"):
            return Comparison(ref.entity, ref.key, op, _typed_values(ref, op, self._list(shown)))
        return Comparison(ref.entity, ref.key, op, _typed_value(ref, op, self._scalar(shown)))

    def ref(self, expected: str) -> _Ref:
        """``entity.key`` with the entity and attribute names resolved."""
        token = self.current
        if token.kind != "word" or token.text.lower() in _RESERVED:
            raise self.fail(f"expected {expected}")
        self.advance()
        prefix, dot, key = token.text.partition(".")
        entity = _ENTITIES.get(prefix.lower())
        if entity is None:
            raise _SyntaxError(_unknown_entity_message(token.text), token.offset)
        if not dot:
            raise self.fail(f"expected '.' and a key after {prefix!r}")
        key_offset = token.offset + len(prefix) + 1
        if not key:
            key, key_offset = self._quoted_key(prefix)
        if entity == "attribute":
            key = _canonical_attribute(key, key_offset)
        return _Ref(entity, key, key_offset)

    def _quoted_key(self, prefix: str) -> tuple[str, int]:
        token = self.current
        if token.kind not in ("backtick", "dquoted"):
            raise self.fail(f"expected a key after '{prefix}.'")
        self.advance()
        if not token.value:
            raise _SyntaxError("a key must not be empty", token.offset)
        return token.value, token.offset

    def _operator(self) -> tuple[str, _Token]:
        token = self.current
        if token.kind == "op":
            self.advance()
            return token.value, token
        if token.kind == "word":
            word = token.text.lower()
            if word in ("like", "ilike", "in"):
                self.advance()
                return word.upper(), token
            if word == "not":
                return self._not_operator(), token
            if word == "is":
                return self._is_operator(), token
        raise self.fail("expected an operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS)")

    def _not_operator(self) -> str:
        self.advance()
        token = self.current
        if token.kind == "word" and token.text.lower() in ("like", "ilike", "in"):
            self.advance()
            return "NOT " + token.text.upper()
        raise self.fail("expected LIKE, ILIKE or IN after NOT")

    def _is_operator(self) -> str:
        self.advance()
        negated = self._accept_keyword("not") is not None
        if self._accept_keyword("null") is None:
            raise self.fail("expected NULL after IS NOT" if negated else "expected NULL after IS")
        return "IS NOT NULL" if negated else "IS NULL"

    def _scalar(self, after: str) -> _Literal:
        token = self.current
        if token.kind in ("string", "dquoted"):
            self.advance()
            return _Literal(token.value, token)
        if token.kind == "number":
            self.advance()
            return _Literal(_to_float(token), token)
        raise self.fail(f"expected a value after '{after}'")

    def _list(self, op: str) -> list[_Literal]:
        if self.current.kind != "(":
            raise self.fail(f"expected a parenthesised list of values after {op}")
        self.advance()
        items = [self._scalar(f"{op} (")]
        while self.current.kind == ",":
            self.advance()
            items.append(self._scalar(","))
        if self.current.kind != ")":
            raise self.fail("expected ',' or ')' in the list of values")
        self.advance()
        return items


def _combine(kind: type[And] | type[Or], items: list[Expr]) -> Expr:
    """One item stays bare; nested nodes of the same kind are flattened into one."""
    if len(items) == 1:
        return items[0]
    flat: list[Expr] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    return kind(tuple(flat))


def _to_float(token: _Token) -> float:
    value = float(token.text)
    if not math.isfinite(value):
        raise _SyntaxError(f"number {token.text} is out of range", token.offset)
    return value


def _unknown_entity_message(word: str) -> str:
    hint = ""
    bare = word.lower()
    if bare in STRING_ATTRIBUTES or bare in NUMERIC_ATTRIBUTES or bare in ATTRIBUTE_ALIASES:
        hint = f" (did you mean attributes.{bare}?)"
    return (
        f"expected <entity>.<key> with entity metrics, params, tags or attributes, "
        f"got {word!r}{hint}"
    )


def _canonical_attribute(key: str, offset: int) -> str:
    name = key.lower()
    name = ATTRIBUTE_ALIASES.get(name, name)
    if name in STRING_ATTRIBUTES or name in NUMERIC_ATTRIBUTES:
        return name
    known = ", ".join(sorted(STRING_ATTRIBUTES | NUMERIC_ATTRIBUTES))
    aliases = ", ".join(f"{a} ({c})" for a, c in sorted(ATTRIBUTE_ALIASES.items()))
    raise _SyntaxError(
        f"unknown attribute {key!r}; known attributes: {known}; aliases: {aliases}", offset
    )


# ------------------------------------------------------------------------------------- type rules


def _is_numeric(ref: _Ref) -> bool:
    return ref.entity == "metric" or (ref.entity == "attribute" and ref.key in NUMERIC_ATTRIBUTES)


def _ref_text(ref: _Ref) -> str:
    return f"{_CANONICAL_PREFIX[ref.entity]}.{_key_text(ref.key)}"


def _describe_kind(ref: _Ref) -> str:
    if ref.entity == "attribute":
        kind = "numeric" if _is_numeric(ref) else "string"
        return f"{_ref_text(ref)} is a {kind} attribute"
    return f"{_ref_text(ref)} is a {ref.entity} and {ref.entity}s are " + (
        "numeric" if _is_numeric(ref) else "strings"
    )


def _check_operator(ref: _Ref, op: str, token: _Token) -> None:
    allowed = _NUMERIC_OPS if _is_numeric(ref) else _STRING_OPS
    if op not in allowed:
        raise _SyntaxError(
            f"operator {op} is not allowed here: {_describe_kind(ref)}; "
            f"allowed operators: {', '.join(allowed)}",
            token.offset,
        )


def _typed_values(
    ref: _Ref, op: str, literals: list[_Literal]
) -> tuple[float, ...] | tuple[str, ...]:
    if _is_numeric(ref):
        return tuple(_number_value(ref, lit) for lit in literals)
    return tuple(_string_value(ref, op, lit) for lit in literals)


def _typed_value(ref: _Ref, op: str, literal: _Literal) -> float | str:
    if _is_numeric(ref):
        return _number_value(ref, literal)
    return _string_value(ref, op, literal)


def _number_value(ref: _Ref, literal: _Literal) -> float:
    value, token = literal.value, literal.token
    if isinstance(value, float):
        return value
    hint = f" (write {value.strip()} without quotes)" if _looks_numeric(value) else ""
    raise _SyntaxError(
        f"{_describe_kind(ref)}: compare it with a number, not the string {token.text}{hint}",
        token.offset,
    )


def _string_value(ref: _Ref, op: str, literal: _Literal) -> str:
    value, token = literal.value, literal.token
    if isinstance(value, float):
        example = (
            f"'{token.text}'" if op in ("IN", "NOT IN") else f"{_ref_text(ref)} {op} '{token.text}'"
        )
        raise _SyntaxError(f"{_describe_kind(ref)}: quote the value, e.g. {example}", token.offset)
    if ref.entity == "attribute" and ref.key == "status" and op in ("=", "!=", "IN", "NOT IN"):
        return _run_status(value, token)
    return value


def _looks_numeric(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _run_status(value: str, token: _Token) -> str:
    status = value.upper()
    if status not in RUN_STATUSES:
        raise _SyntaxError(
            f"invalid run status {value!r} for attributes.status; "
            f"expected one of {', '.join(RUN_STATUSES)}",
            token.offset,
        )
    return status


# ------------------------------------------------------------------------------------- public API


def parse_filter(text: str | None) -> Expr | None:
    """Parse a filter; None or blank text means "no filter". Raises InvalidArgument."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidArgument(f"a filter must be a string, got {type(text).__name__}")
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(
            f"Invalid filter: it is {len(text)} characters long; the limit is {MAX_FILTER_LENGTH}",
            details={"length": len(text), "max_length": MAX_FILTER_LENGTH},
        )
    if not text.strip():
        return None
    try:
        return _Parser(text).parse()
    except _SyntaxError as e:
        raise _invalid("Invalid filter", text, e) from None


def to_text(expr: Expr) -> str:
    """Canonical text for ``expr``; ``parse_filter(to_text(e)) == e`` for any parsed ``e``."""
    if isinstance(expr, Comparison):
        return _comparison_text(expr)
    if isinstance(expr, Not):
        return "NOT " + _operand_text(expr.item, parenthesise=(And, Or))
    if isinstance(expr, And):
        return " AND ".join(_operand_text(item, parenthesise=(And, Or)) for item in expr.items)
    if isinstance(expr, Or):
        return " OR ".join(_operand_text(item, parenthesise=(Or,)) for item in expr.items)
    raise TypeError(f"not a filter expression: {expr!r}")


def _operand_text(expr: Expr, parenthesise: tuple[type, ...]) -> str:
    text = to_text(expr)
    return f"({text})" if isinstance(expr, parenthesise) else text


def _comparison_text(c: Comparison) -> str:
    ref = f"{_CANONICAL_PREFIX[c.entity]}.{_key_text(c.key)}"
    if c.value is None:
        return f"{ref} {c.op}"
    if isinstance(c.value, tuple):
        return f"{ref} {c.op} ({', '.join(_value_text(v) for v in c.value)})"
    return f"{ref} {c.op} {_value_text(c.value)}"


def _key_text(key: str) -> str:
    if key and all(c in _IDENT_CHARS for c in key):
        return key
    return "`" + key.replace("`", "``") + "`"


def _value_text(value: float | str) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(float(value))


def parse_order_by(items: Sequence[str] | None) -> list[OrderKey]:
    """Parse ``order_by`` items such as ``"metrics.m1 DESC"``; ascending unless DESC."""
    if items is None:
        return []
    if isinstance(items, str):
        raise InvalidArgument("order_by must be a list of strings, not a single string")
    if len(items) > MAX_ORDER_BY_KEYS:
        raise InvalidArgument(
            f"order_by has {len(items)} keys; the limit is {MAX_ORDER_BY_KEYS}",
            details={"count": len(items), "max_keys": MAX_ORDER_BY_KEYS},
        )
    return [_order_key(item) for item in items]


def _order_key(item: str) -> OrderKey:
    if not isinstance(item, str):
        raise InvalidArgument(f"order_by items must be strings, got {item!r}")
    label = f"Invalid order_by item {item!r}"
    if len(item) > MAX_FILTER_LENGTH or not item.strip():
        raise InvalidArgument(f"{label}: expected e.g. 'metrics.acc DESC'", details={"item": item})
    try:
        parser = _Parser(item)
        ref = parser.ref("a sort key such as metrics.acc DESC")
        ascending = True
        if parser.current.is_keyword("asc") or parser.current.is_keyword("desc"):
            ascending = parser.advance().text.lower() == "asc"
        if parser.current.kind != "eof":
            raise parser.fail("expected ASC, DESC or the end of the item")
    except _SyntaxError as e:
        error = _invalid(label, item, e)
        error.details["item"] = item
        raise error from None
    return OrderKey(ref.entity, ref.key, ascending)
