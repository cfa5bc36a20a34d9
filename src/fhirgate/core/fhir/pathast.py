"""A parser for the FHIRPath subset found in R4 search expressions, producing a small immutable AST.

Precedence follows FHIRPath N1 §10 (tightest first): invocation `.`, `is`/`as`, `|`, `=`/`!=`, `and`,
`or`. Anything outside the subset raises UnsupportedExpression so the caller can fall back to a
full FHIRPath engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class UnsupportedExpression(ValueError):
    """The expression uses FHIRPath outside the compiled subset."""


@dataclass(frozen=True, slots=True)
class Ident:
    """A bare identifier: the root type name, or a member of `$this` inside a where()."""

    name: str


@dataclass(frozen=True, slots=True)
class Member:
    """`base.name`."""

    base: Node
    name: str


@dataclass(frozen=True, slots=True)
class Func:
    """`base.name(args)`, or `name(args)` on `$this` when base is None."""

    base: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Literal:
    """A string, boolean or number literal."""

    value: Any


@dataclass(frozen=True, slots=True)
class Binary:
    """`left op right` for op in `|`, `=`, `!=`, `and`, `or`."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class TypeOp:
    """`operand is T` / `operand as T`."""

    op: str
    operand: Node
    type_name: str


Node = Ident | Member | Func | Literal | Binary | TypeOp

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][A-Za-z0-9_]*)"
    r"|`(?P<qid>[^`]+)`|(?P<op>!=|[().,|=]))"
)
_KEYWORDS = frozenset({"and", "or", "is", "as", "true", "false"})
_UNSUPPORTED_WORDS = frozenset({"xor", "implies", "in", "contains", "div", "mod"})
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "f": "\f"}


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; kind is str, num, id, kw or op."""
    out: list[tuple[str, str]] = []
    pos = 0
    end = len(text.rstrip())
    while pos < end:
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise UnsupportedExpression(f"unexpected character at {pos}")
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "qid":
            kind = "id"
        elif kind == "id" and value in _KEYWORDS:
            kind = "kw"
        elif kind == "id" and value in _UNSUPPORTED_WORDS:
            raise UnsupportedExpression(f"operator {value!r}")
        out.append((kind, value))
    return out


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise UnsupportedExpression("string escape")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _Parser:
    """Recursive descent over the token list."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise UnsupportedExpression(f"expected {value or 'a token'} at token {self.pos}")
        self.pos += 1
        return tok

    def at(self, *values: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] in ("op", "kw") and tok[1] in values

    def parse(self) -> Node:
        node = self.or_expr()
        if self.peek() is not None:
            raise UnsupportedExpression(f"unexpected token at {self.pos}")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.at("or"):
            self.take()
            node = Binary("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.eq_expr()
        while self.at("and"):
            self.take()
            node = Binary("and", node, self.eq_expr())
        return node

    def eq_expr(self) -> Node:
        node = self.union_expr()
        while self.at("=", "!="):
            op = self.take()[1]
            node = Binary(op, node, self.union_expr())
        return node

    def union_expr(self) -> Node:
        node = self.type_expr()
        while self.at("|"):
            self.take()
            node = Binary("|", node, self.type_expr())
        return node

    def type_expr(self) -> Node:
        node = self.postfix()
        while self.at("is", "as"):
            op = self.take()[1]
            kind, name = self.take()
            if kind != "id":
                raise UnsupportedExpression("type name expected")
            while self.at("."):  # FHIR.Patient / System.String
                self.take()
                name = self.take()[1]
            node = TypeOp(op, node, name)
        return node

    def postfix(self) -> Node:
        node = self.term()
        while self.at("."):
            self.take()
            kind, name = self.take()
            if kind not in ("id", "kw"):
                raise UnsupportedExpression("member name expected")
            node = Func(node, name, self.args()) if self.at("(") else Member(node, name)
        return node

    def args(self) -> tuple[Node, ...]:
        self.take("(")
        out: list[Node] = []
        while not self.at(")"):
            out.append(self.or_expr())
            if not self.at(")"):
                self.take(",")
        self.take(")")
        return tuple(out)

    def term(self) -> Node:
        kind, value = self.take()
        if kind == "str":
            return Literal(_unquote(value))
        if kind == "num":
            return Literal(float(value) if "." in value else int(value))
        if kind == "kw" and value in ("true", "false"):
            return Literal(value == "true")
        if kind == "id":
            return Func(None, value, self.args()) if self.at("(") else Ident(value)
        if kind == "op" and value == "(":
            node = self.or_expr()
            self.take(")")
            return node
        raise UnsupportedExpression(f"unexpected {value!r}")


def parse(expression: str) -> Node:
    """The AST of a FHIRPath expression in the supported subset; raises UnsupportedExpression."""
    return _Parser(expression).parse()


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
