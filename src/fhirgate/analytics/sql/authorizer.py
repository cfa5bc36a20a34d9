"""The SQLite authorizer of the sandbox: a statement may only SELECT from the principal's views.

SQLite calls the authorizer for every action while it compiles a statement (sqlite3_set_authorizer,
https://sqlite.org/c3ref/set_authorizer.html), with the innermost view or trigger that caused the
action as its fifth argument. The rules, deny by default:

- SELECT, WITH RECURSIVE (and reads of the CTE itself, which has no schema), and the allow-listed
  core, date/time, math, JSON, aggregate and window functions;
- reads of a user-facing temp view (`appointment`) the principal was granted;
- reads of a secret-named inner temp view (`fg_<random>_appointment`) only from its user-facing view;
- `fg_deid` (Safe Harbor per cell) only inside an inner view, for callers whose role is de-identified;
- reads of the store's `main.<view table>` only from that table's inner view; its `_rid`, and the
  `_security` label index (`main.ix_token`, `main.params`), only from an inner view's row filter, which
  never selects them (policy.RowFilter: withheld labels).

The inner view's name is random per connection and never shown: SQLite reports a CTE's name as the
fifth argument just as it reports a view's, so a query `WITH appointment AS (SELECT * FROM
main.appointment) ...` would pass a check against the public name; it cannot name the secret one.
Everything else (PRAGMA, ATTACH, DETACH, writes, DDL, transactions, sqlite_schema, the store's own
tables, load_extension) is denied, and the first denial is kept to explain the error.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

import apsw

RID_COLUMN = "_rid"
# The Safe Harbor cell function (sandbox.deid_cell) de-identified views apply to each column; only an inner
# view may call it, so a query cannot compute the pseudonym of an id it guesses.
DEID_FUNCTION = "fg_deid"
# Store tables an inner view's WHERE may read (withheld-label filter), with the columns it uses.
_FILTER_TABLES = {"ix_token": frozenset({"rid", "pid", "code"}), "params": frozenset({"pid", "code", "rtype"})}
# Temp tables of labelled resource rowids the sandbox keeps (policy.labelled_table); inner views only.
LABELLED_PREFIX = "fg_lab_"
_SQLITE_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"})

# Functions a query may call: SQLite core scalar, aggregate, window, date/time, math and JSON functions
# (https://sqlite.org/lang_corefunc.html and siblings). Not load_extension, the cipher's sqlite3mc_*,
# sqlite_log, FTS/R-Tree/geopoly helpers (some run SQL of their own), nor anything added later unreviewed.
ALLOWED_FUNCTIONS = frozenset(
    """
    abs char coalesce concat concat_ws format glob hex if ifnull iif instr length like likelihood likely lower
    ltrim max min nullif octet_length printf quote random randomblob replace round rtrim sign soundex substr
    substring trim typeof unhex unicode unistr unistr_quote unlikely upper zeroblob sqlite_version avg count
    group_concat string_agg sum total median percentile percentile_cont percentile_disc row_number rank
    dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value date time datetime
    julianday unixepoch strftime timediff current_date current_time current_timestamp acos acosh asin asinh
    atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10 log2 mod pi pow power radians sin
    sinh sqrt tan tanh trunc json jsonb json_array jsonb_array json_array_length json_error_position
    json_extract jsonb_extract json_insert jsonb_insert json_object jsonb_object json_patch jsonb_patch
    json_pretty json_quote json_remove jsonb_remove json_replace jsonb_replace json_set jsonb_set json_type
    json_valid json_group_array jsonb_group_array json_group_object jsonb_group_object -> ->>
    """.split()  # noqa: SIM905 - a word list reads better than 130 quoted strings
)


@dataclass(frozen=True, slots=True)
class Denial:
    """Why the authorizer refused a statement: what kind of action, on what (a schema name, never a value)."""

    kind: str  # "table", "column", "function", "statement"
    name: str


@dataclass(slots=True)
class ViewAuthorizer:
    """Authorizer state for one sandbox connection: the installed views and the current call's findings."""

    secret: str = field(default_factory=lambda: secrets.token_hex(12))
    views: dict[str, frozenset[str]] = field(default_factory=dict)  # public view name -> its columns
    inner: dict[str, str] = field(default_factory=dict)  # secret inner view name -> public view name
    unfiltered: frozenset[str] = frozenset()  # views whose rows are all visible (no row filter)
    schema_names: frozenset[str] = frozenset()  # every table and view name in main and temp (lower case)
    touched: set[str] = field(default_factory=set)
    denial: Denial | None = None

    def inner_name(self, view: str) -> str:
        """The secret name of the inner temp view that reads `main.<view>`."""
        return f"fg_{self.secret}_{view}"

    def install(
        self, views: Mapping[str, frozenset[str]], unfiltered: frozenset[str], schema_names: frozenset[str]
    ) -> None:
        """Record the views now installed (public name -> readable columns), which are unfiltered, and
        the names of every table and view in the database (so a CTE is never mistaken for one)."""
        self.views = dict(views)
        self.inner = {self.inner_name(v): v for v in views}
        self.unfiltered = unfiltered
        self.schema_names = frozenset(n.lower() for n in schema_names) | _SQLITE_TABLES | frozenset(self.inner)

    def reset(self) -> None:
        """Forget the previous call's findings."""
        self.touched = set()
        self.denial = None

    def _deny(self, kind: str, name: str) -> int:
        if self.denial is None:
            self.denial = Denial(kind, name)
        return apsw.SQLITE_DENY

    def __call__(self, op: int, p1: str | None, p2: str | None, db: str | None, via: str | None) -> int:
        """The authorizer callback (action code, two action arguments, database, innermost view)."""
        if op in (apsw.SQLITE_SELECT, apsw.SQLITE_RECURSIVE):
            return apsw.SQLITE_OK
        if op == apsw.SQLITE_FUNCTION:
            name = (p2 or "").lower()
            if name == DEID_FUNCTION and via in self.inner:
                return apsw.SQLITE_OK  # the inner view's de-identification; never callable from user SQL
            return apsw.SQLITE_OK if name in ALLOWED_FUNCTIONS else self._deny("function", name)
        if op == apsw.SQLITE_READ:
            return self._read(p1 or "", p2 or "", db or "", via)
        return self._deny("statement", str(apsw.mapping_authorizer_function.get(op, op)))

    def _read(self, table: str, column: str, db: str, via: str | None) -> int:
        table, db = table.lower(), db.lower()
        if column == "":
            return self._row_read(table, db)
        if db == "temp":
            if table.startswith(LABELLED_PREFIX) and via in self.inner:
                return apsw.SQLITE_OK  # an inner view's withheld-label filter (policy.labelled_table)
            if table in self.views:
                self.touched.add(table)
                return apsw.SQLITE_OK
            owner = self.inner.get(table)
            if owner is not None and via == owner:
                self.touched.add(owner)
                return apsw.SQLITE_OK
            return self._deny("table", table)
        if db == "main":
            owner = self.inner.get(via or "")
            if owner is not None and column in _FILTER_TABLES.get(table, ()):
                return apsw.SQLITE_OK  # the inner view's label filter; its SELECT list never shows these
            if owner is None or owner != table:
                return self._deny("table", table)
            if column != RID_COLUMN and column not in self.views[owner]:
                return self._deny("column", column)
            self.touched.add(owner)
            return apsw.SQLITE_OK
        if db == "" and table not in self.schema_names:
            return apsw.SQLITE_OK  # a table with no schema: a recursive CTE's queue
        return self._deny("table", table)

    def _row_read(self, table: str, db: str) -> int:
        """A FROM item none of whose columns is used: SQLite reports it as a read of column '' with the
        schema name as written (empty when unqualified) and no view context. It reveals how many rows
        there are, so it is allowed for the caller's views, for a table the caller sees entirely (its
        view has no row filter), and for a CTE; never for a filtered table or any other table."""
        if table in self.views and db in ("temp", ""):
            self.touched.add(table)
            return apsw.SQLITE_OK
        if table in self.unfiltered and db in ("main", ""):
            self.touched.add(table)
            return apsw.SQLITE_OK
        if table in self.inner and db in ("temp", ""):
            return apsw.SQLITE_OK
        if db == "" and table not in self.schema_names:
            return apsw.SQLITE_OK
        return self._deny("table", table)
