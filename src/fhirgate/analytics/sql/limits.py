"""The bounds every SQL call runs under, and the errors that name them and what is allowed instead.

The time limit and value size are enforced by the engine (progress handler, SQLITE_LIMIT_*); rows per
page, cell size and page size are enforced while rows are read, so a result is always bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhirgate.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class SqlLimits:
    """Bounds of one query_sql call (defaults suit an interactive assistant)."""

    time_limit_ms: int = 2000
    default_rows: int = 100
    max_rows: int = 200
    max_cell_chars: int = 4000
    max_page_chars: int = 200_000
    max_offset: int = 10_000
    max_sql_chars: int = 20_000
    max_columns: int = 100
    engine_max_value_bytes: int = 1_000_000

    def as_dict(self) -> dict[str, Any]:
        """The limits as reported to the model."""
        return {
            "time_limit_ms": self.time_limit_ms,
            "max_rows_per_page": self.max_rows,
            "max_total_rows": self.max_offset + self.max_rows,
            "max_cell_chars": self.max_cell_chars,
            "max_sql_chars": self.max_sql_chars,
            "max_columns": self.max_columns,
        }

    def check_rows(self, max_rows: Any) -> int:
        """A valid page size, else InvalidInput naming the range."""
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or not 1 <= max_rows <= self.max_rows:
            raise InvalidInput("max_rows", "out of range", f"an integer from 1 to {self.max_rows}")
        return max_rows

    def check_sql(self, sql: Any) -> str:
        """A non-empty SQL string within the length limit, else InvalidInput."""
        if not isinstance(sql, str) or not sql.strip():
            raise InvalidInput("sql", "empty", "one SQLite SELECT statement over the views (see list_views)")
        if len(sql) > self.max_sql_chars:
            raise InvalidInput("sql", f"is {len(sql)} characters long", f"at most {self.max_sql_chars} characters")
        if "\x00" in sql:
            raise InvalidInput("sql", "contains a NUL character", "plain SQL text")
        return sql

    def time_exceeded(self) -> InvalidInput:
        """The error for a query stopped by the time limit."""
        return InvalidInput(
            "sql",
            f"stopped at the time limit of {self.time_limit_ms} ms",
            "a cheaper query: filter on indexed columns (patient_id, dates, codes), aggregate with GROUP BY, "
            "avoid unbounded WITH RECURSIVE and cross joins",
        )

    def cell_too_large(self, column: str, size: int) -> InvalidInput:
        """The error for a result value longer than the cell limit."""
        return InvalidInput(
            "sql",
            f"a value in result column {column!r} is {size} characters long, over the limit of {self.max_cell_chars}",
            f"shorter values, e.g. substr({column}, 1, {self.max_cell_chars})",
        )

    def value_too_large(self) -> InvalidInput:
        """The error for an intermediate value over the engine's size limit."""
        return InvalidInput(
            "sql",
            f"built a string or blob larger than {self.engine_max_value_bytes} bytes",
            "smaller values: limit group_concat/printf/zeroblob sizes",
        )

    def offset_exceeded(self) -> InvalidInput:
        """The error for paging past the total row bound."""
        return InvalidInput(
            "cursor",
            f"paging stops after {self.max_offset + self.max_rows} rows",
            "aggregate (GROUP BY, count, sum) or narrow the query with WHERE instead of paging further",
        )
