"""Turning SQLite failures of a caller's query into errors that say what is allowed, without echoing values.

SQLite messages quote the offending SQL (`near "'Smith'": syntax error`, `no such column: Smith`), and a
query may carry names or birth dates as literals, so raw messages never reach the caller or a log.
Each message is reduced to its kind plus the character position (sqlite3_error_offset); a name from
the message is repeated only when it is a known view, column, function or SQL keyword.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import apsw

from fhirgate.analytics.sql.authorizer import ALLOWED_FUNCTIONS, Denial
from fhirgate.analytics.sql.catalog import ViewInfo
from fhirgate.analytics.sql.limits import SqlLimits
from fhirgate.analytics.sql.policy import ViewGrant
from fhirgate.errors import AccessDenied, FhirgateError, InvalidInput, StoreError

_KEYWORDS = frozenset(k.upper() for k in apsw.keywords)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PUNCT = re.compile(r"[(),;.*=<>!|+\-/%]{1,3}")
FUNCTIONS_ALLOWED = "SQLite core, date/time, math, JSON, aggregate and window functions"


class Explainer:
    """Maps one call's SQLite failure to a FhirgateError, knowing the views and the caller's grants."""

    def __init__(self, catalog: Mapping[str, ViewInfo], grants: Mapping[str, ViewGrant], limits: SqlLimits) -> None:
        self.catalog = catalog
        self.grants = grants
        self.limits = limits
        self.allowed = sorted(name for name, g in grants.items() if g.allowed and name in catalog)
        self._names = set(catalog) | {c for info in catalog.values() for c in info.column_names}

    @property
    def allowed_views(self) -> str:
        return ", ".join(self.allowed) if self.allowed else "none (your scopes allow no view; see list_views)"

    def unavailable(self, view: str) -> AccessDenied:
        """The refusal for a known view the caller was not granted (names the scope it would need)."""
        grant = self.grants.get(view)
        if grant is None or grant.allowed:
            message = f"view {view} is not available. Views you may query: {self.allowed_views}."
            return AccessDenied(message, reason="sql.view_unavailable")
        message = f"view {view} is not available to you: {grant.detail} Views you may query: {self.allowed_views}."
        if grant.required_scope:
            message += f" Required scope: {grant.required_scope}."
        return AccessDenied(message, reason=grant.reason, required_scope=grant.required_scope)

    def denied(self, denial: Denial) -> FhirgateError:
        """The error for an action the authorizer refused."""
        name = denial.name if _IDENT.fullmatch(denial.name) else "?"
        if denial.kind == "function":
            return InvalidInput("sql", f"function {name}() is not available", FUNCTIONS_ALLOWED)
        if denial.kind == "column":
            return AccessDenied(
                f"column {name} is internal and cannot be read. Columns of each view: describe_view.",
                reason="sql.column_denied",
            )
        if denial.kind == "table":
            if name in self.catalog and name not in self.allowed:
                return self.unavailable(name)
            return AccessDenied(
                f"only the views can be read, by their plain names (e.g. FROM appointment, not main.appointment, "
                f"store tables or sqlite_schema). Views you may query: {self.allowed_views}.",
                reason="sql.table_denied",
            )
        return AccessDenied(
            f"only a SELECT statement is allowed ({name.removeprefix('SQLITE_')} is not): no PRAGMA, ATTACH, "
            "writes, schema changes or transactions.",
            reason="sql.statement_denied",
        )

    def explain(self, exc: BaseException, denial: Denial | None) -> FhirgateError:
        """The FhirgateError for `exc`, raised while compiling or running the caller's statement."""
        if isinstance(exc, apsw.InterruptError):
            return self.limits.time_exceeded()
        if isinstance(exc, apsw.TooBigError):
            return self.limits.value_too_large()
        if denial is not None and isinstance(exc, apsw.AuthError | apsw.SQLError):
            return self.denied(denial)
        if isinstance(exc, apsw.ReadOnlyError):
            return self.denied(Denial("statement", "write"))
        if isinstance(exc, apsw.BindingsError):
            return InvalidInput("sql", "has parameters (?, :name)", "values written inline as SQL literals")
        if isinstance(exc, apsw.SQLError):
            return self._sql_error(str(exc), _offset(exc))
        if isinstance(exc, apsw.Error):
            return StoreError(f"the view database failed ({type(exc).__name__})")
        return StoreError(f"the query failed ({type(exc).__name__})")

    def _known(self, text: str) -> str | None:
        """`text` when it is a view or column name (safe to repeat), else None."""
        last = text.rsplit(".", 1)[-1]
        return text if last in self._names and _IDENT.fullmatch(last) else None

    def _sql_error(self, message: str, offset: int | None) -> FhirgateError:
        at = f" at character {offset}" if offset is not None else ""
        body = message.removeprefix("SQLError: ")
        head, _, tail = body.partition(": ")
        tail = tail.strip()
        if head == "no such table":
            bare = tail.rsplit(".", 1)[-1]
            if bare in self.catalog and bare not in self.allowed:
                return self.unavailable(bare)
            return InvalidInput("sql", f"reads a table that is not one of your views{at}", self.allowed_views)
        if head in ("no such column", "ambiguous column name"):
            known = self._known(tail)
            what = f"{head} {known}" if known else head
            return InvalidInput(
                "sql",
                f"{what}{at}",
                "columns listed by describe_view; text values in single quotes ('noshow'), identifiers bare",
            )
        if head == "no such function":
            name = tail.lower() if tail.lower() in ALLOWED_FUNCTIONS else "(unknown)"
            return InvalidInput("sql", f"no such function {name}{at}", FUNCTIONS_ALLOWED)
        if body.startswith("near ") and body.endswith("syntax error"):
            token = body[len("near ") :].rsplit(":", 1)[0].strip().strip('"')
            shown = f" near {token}" if token.upper() in _KEYWORDS or _PUNCT.fullmatch(token) else ""
            return InvalidInput("sql", f"syntax error{shown}{at}", "one SQLite SELECT statement")
        if head.startswith("unrecognized token"):
            return InvalidInput("sql", f"unrecognized token{at} (unterminated quote or stray character)")
        if body.startswith("incomplete input"):
            return InvalidInput("sql", "is incomplete (unterminated statement, quote or comment)")
        return InvalidInput("sql", f"{_strip_values(body)}{at}", "one SQLite SELECT statement over your views")


def _offset(exc: BaseException) -> int | None:
    offset = getattr(exc, "error_offset", -1)
    return offset if isinstance(offset, int) and offset >= 0 else None


def _strip_values(message: str) -> str:
    """A SQLite message cut before anything it quotes from the SQL (after ':' or a quote)."""
    cut = message.split(":", 1)[0]
    for quote in ("'", '"', "`", "["):
        cut = cut.split(quote, 1)[0]
    cut = cut.strip() or "SQL error"
    return cut[:120]
