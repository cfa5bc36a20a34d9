"""The one FHIRPath parser (N1 grammar, minus a few literal forms), producing a small immutable AST.

Both compilers read it: core/fhir/pathexpr.py compiles the subset found in R4 search expressions (and rejects the
rest with UnsupportedExpression), analytics/sof/compile.py compiles ViewDefinition paths. Precedence follows
FHIRPath N1 §10, tightest first: `.`/`[]`, unary `+ -`, `* / div mod`, `+ - &`, `is as`, `|`, `< > <= >=`,
`= ~ != !~`, `in contains`, `and`, `or xor`, `implies`. Text it cannot read raises PathSyntaxError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class PathSyntaxError(ValueError):
    """The expression is not FHIRPath this parser can read."""


@dataclass(frozen=True, slots=True)
class Literal:
    """A literal; kind is string, integer, decimal, boolean, date, dateTime, time or quantity."""

    value: Any
    kind: str


@dataclass(frozen=True, slots=True)
class Empty:
    """The empty collection `{}`."""


@dataclass(frozen=True, slots=True)
class Var:
    """An environment variable `%name` (view constants, %rowIndex, %resource...)."""

    name: str


@dataclass(frozen=True, slots=True)
class Special:
    """`$this`, `$index` or `$total`."""

    name: str


@dataclass(frozen=True, slots=True)
class Ident:
    """A bare identifier: a member of the focus, or the focus's type name."""

    name: str


@dataclass(frozen=True, slots=True)
class Member:
    """`base.name`."""

    base: Node
    name: str


@dataclass(frozen=True, slots=True)
class Call:
    """`base.name(args)`, or `name(args)` on the focus when base is None."""

    base: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Indexer:
    """`base[index]`."""

    base: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Binary:
    """`left op right` for every infix operator except `is`/`as`."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Unary:
    """`-operand` or `+operand`."""

    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class TypeOp:
    """`operand is T` / `operand as T`."""

    op: str
    operand: Node
    type_name: str


Node = Literal | Empty | Var | Special | Ident | Member | Call | Indexer | Binary | Unary | TypeOp

_DATE = r"\d{4}(?:-\d{2}(?:-\d{2})?)?(?:T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?(?:Z|[+-]\d{2}:\d{2})?)?"
_TOKEN_RE = re.compile(
    r"(?P<ws>\s+|//[^\n]*|/\*.*?\*/)"
    r"|(?P<str>'(?:[^'\\]|\\.)*')"
    r"|(?P<time>@T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)"
    rf"|(?P<date>@{_DATE})"
    r"|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<var>%(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]*`|'(?:[^'\\]|\\.)*'))"
    r"|(?P<special>\$(?:this|index|total))"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<qid>`(?:[^`\\]|\\.)*`)"
    r"|(?P<op><=|>=|!=|!~|[=~<>+\-*/&|()\[\]{}.,])",
    re.S,
)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "f": "\f"}
_BINARY_PRECEDENCE = {
    "implies": 1,
    "or": 2,
    "xor": 2,
    "and": 3,
    "in": 4,
    "contains": 4,
    "=": 5,
    "~": 5,
    "!=": 5,
    "!~": 5,
    "<": 6,
    ">": 6,
    "<=": 6,
    ">=": 6,
    "|": 7,
    "is": 8,
    "as": 8,
    "+": 9,
    "-": 9,
    "&": 9,
    "*": 10,
    "/": 10,
    "div": 10,
    "mod": 10,
}
_CALENDAR_UNITS = frozenset(
    unit + plural
    for unit in ("year", "month", "week", "day", "hour", "minute", "second", "millisecond")
    for plural in ("", "s")
)


def _unescape(body: str) -> str:
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and i + 5 < len(body):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            if nxt not in _ESCAPES:
                raise PathSyntaxError(f"unknown string escape at {i}")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; kind is str, num, date, time, var, special, id or op (quoted ids become id)."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match:
            raise PathSyntaxError(f"unexpected character at position {pos}")
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "ws":
            continue
        if kind == "qid":
            kind, value = "id", _unescape(value[1:-1])
        elif kind == "var" and value[1] in "`'":
            value = "%" + _unescape(value[2:-1])
        out.append((kind, value))
    return out


class _Parser:
    """Precedence climbing over the token list."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.toks[i] if i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise PathSyntaxError(f"expected {value or 'more input'} at token {self.pos}")
        self.pos += 1
        return tok

    def at_op(self, *values: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "op" and tok[1] in values

    def parse(self) -> Node:
        if not self.toks:
            raise PathSyntaxError("empty expression")
        node = self.expression(1)
        if self.peek() is not None:
            raise PathSyntaxError(f"unexpected token at {self.pos}")
        return node

    def binary_op(self) -> str | None:
        tok = self.peek()
        if tok is None or tok[0] not in ("op", "id") or tok[1] not in _BINARY_PRECEDENCE:
            return None
        return tok[1]

    def expression(self, min_prec: int) -> Node:
        node = self.unary()
        while True:
            op = self.binary_op()
            if op is None or _BINARY_PRECEDENCE[op] < min_prec:
                return node
            self.take()
            prec = _BINARY_PRECEDENCE[op]
            if op in ("is", "as"):
                node = TypeOp(op, node, self.type_name())
            else:
                node = Binary(op, node, self.expression(prec + 1))

    def type_name(self) -> str:
        kind, name = self.take()
        if kind != "id":
            raise PathSyntaxError("type name expected")
        while self.at_op("."):
            self.take()
            kind, part = self.take()
            if kind != "id":
                raise PathSyntaxError("type name expected")
            name = f"{name}.{part}"
        return name

    def unary(self) -> Node:
        if self.at_op("+", "-"):
            op = self.take()[1]
            return Unary(op, self.unary())
        return self.postfix()

    def postfix(self) -> Node:
        node = self.term()
        while True:
            if self.at_op("."):
                self.take()
                kind, name = self.take()
                if kind != "id":
                    raise PathSyntaxError("member name expected")
                node = Call(node, name, self.args()) if self.at_op("(") else Member(node, name)
            elif self.at_op("["):
                self.take()
                index = self.expression(1)
                self.take("]")
                node = Indexer(node, index)
            else:
                return node

    def args(self) -> tuple[Node, ...]:
        self.take("(")
        out: list[Node] = []
        while not self.at_op(")"):
            out.append(self.expression(1))
            if not self.at_op(")"):
                self.take(",")
        self.take(")")
        return tuple(out)

    def term(self) -> Node:
        kind, value = self.take()
        if kind == "str":
            return Literal(_unescape(value[1:-1]), "string")
        if kind == "num":
            nxt = self.peek()
            if nxt is not None and (nxt[0] == "str" or (nxt[0] == "id" and nxt[1] in _CALENDAR_UNITS)):
                self.take()
                return Literal((value, nxt[1]), "quantity")
            return Literal(value, "decimal") if "." in value else Literal(int(value), "integer")
        if kind == "date":
            return Literal(value[1:], "dateTime" if "T" in value else "date")
        if kind == "time":
            return Literal(value[2:], "time")
        if kind == "var":
            return Var(value[1:])
        if kind == "special":
            return Special(value)
        if kind == "id":
            if value in ("true", "false") and not self.at_op("("):
                return Literal(value == "true", "boolean")
            return Call(None, value, self.args()) if self.at_op("(") else Ident(value)
        if kind == "op" and value == "(":
            node = self.expression(1)
            self.take(")")
            return node
        if kind == "op" and value == "{":
            self.take("}")
            return Empty()
        raise PathSyntaxError(f"unexpected {value!r}")


def parse(expression: str) -> Node:
    """The AST of a FHIRPath expression; raises PathSyntaxError."""
    return _Parser(expression).parse()


def variables(node: Node) -> set[str]:
    """Every `%name` the expression reads."""
    found: set[str] = set()
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Var):
            found.add(n.name)
        elif isinstance(n, Member | Unary | TypeOp | Indexer):
            stack.append(n.base if isinstance(n, Member | Indexer) else n.operand)
            if isinstance(n, Indexer):
                stack.append(n.index)
        elif isinstance(n, Call):
            stack.extend(n.args)
            if n.base is not None:
                stack.append(n.base)
        elif isinstance(n, Binary):
            stack.extend((n.left, n.right))
    return found


def split_union(expression: str) -> list[str]:
    """The top-level `|` terms of an expression, each with redundant outer parentheses removed."""
    terms: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(expression):
        if ch == "'" and (i == 0 or expression[i - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            terms.append(expression[start:i])
            start = i + 1
    terms.append(expression[start:])
    return [t for t in (_strip_parens(t.strip()) for t in terms) if t]


def _strip_parens(term: str) -> str:
    """`(X)` → `X` when the outer parentheses enclose the whole term."""
    while term.startswith("(") and term.endswith(")"):
        depth = 0
        for i, ch in enumerate(term):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0 and i != len(term) - 1:
                    return term
        term = term[1:-1].strip()
    return term
