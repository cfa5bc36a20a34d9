"""`fhirgate views add|list|rebuild`: administer the materialized analytics views of a data directory.

The views are tables beside the store (named as the views, plus the hidden `_rid` column) that every
write keeps current; these verbs add a user view (built from the current store at once), show them,
and rebuild them from the resources.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from fhirgate.database import resolve_key
from fhirgate.errors import ConfigError, InvalidInput
from fhirgate.location import open_location

AddData = Callable[[argparse.ArgumentParser], None]

# A ViewDefinition is a small document; anything larger is refused before parsing.
MAX_DEFINITION_BYTES = 1_000_000


def add_verbs(views: Any, add_data: AddData) -> None:
    """Add the add/list/rebuild verbs to the `views` sub-command's subparsers."""
    a = views.add_parser("add", help="add (or replace) a user view from a SQL on FHIR ViewDefinition JSON file")
    add_data(a)
    a.add_argument("file", metavar="FILE.json", help="the ViewDefinition; its `name` names the table")
    a.set_defaults(handler=cmd_add)

    ls = views.add_parser("list", help="list the materialized views: name, resource, rows, columns")
    add_data(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object per view")
    ls.set_defaults(handler=cmd_list)

    r = views.add_parser("rebuild", help="rebuild one view (or all) from the stored resources")
    add_data(r)
    r.add_argument("name", nargs="?", metavar="NAME", help="the view to rebuild (default: all)")
    r.set_defaults(handler=cmd_rebuild)


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    """(store, its PracticeViews) for the data directory; ConfigError when the store keeps no views."""
    from fhirgate.analytics.views.maintenance import PracticeViews
    from fhirgate.store.factory import open_store

    store = open_store(open_location(args.data), key=resolve_key(args.key_file), create=False)
    views = getattr(store, "derived", None)
    if not isinstance(views, PracticeViews) or not hasattr(store, "run_write"):
        store.close()
        raise ConfigError(
            "user-defined views need the SQLite store of a data directory; on PostgreSQL the built-in practice "
            "views live in each host's analytics replica (docs/postgres.md)"
        )
    return store, views


def read_definition(path: Path) -> Any:
    """The parsed JSON of a ViewDefinition file; InvalidInput naming FILE when it cannot be read or parsed."""
    try:
        size = path.stat().st_size
        if size > MAX_DEFINITION_BYTES:
            raise InvalidInput("FILE", f"{size} bytes", f"at most {MAX_DEFINITION_BYTES}")
        return orjson.loads(path.read_bytes())
    except OSError as exc:
        raise InvalidInput("FILE", f"cannot read {path.name}: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise InvalidInput("FILE", f"{path.name} is not valid JSON", "a ViewDefinition JSON document") from None


def cmd_add(args: argparse.Namespace) -> int:
    """Validate the definition, then create and fill its table in one transaction."""
    from fhirgate.analytics.views.registry import user_view

    spec = user_view(read_definition(Path(args.file)))
    store, views = _open(args)
    try:
        rows = store.run_write(lambda conn: views.add(conn, spec))
    finally:
        store.close()
    print(f"view {spec.name} ({spec.resource}) added: {rows} rows in table {spec.name}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print every view: built-in first, then user views (a broken user view shows its problem)."""
    store, views = _open(args)
    try:
        infos = store.run_write(views.describe)
    finally:
        store.close()
    for i in infos:
        if args.json:
            doc = {"name": i.name, "resource": i.resource, "builtin": i.builtin, "rows": i.rows, "columns": i.columns}
            doc |= {"built": i.built} | ({"problem": i.problem} if i.problem else {})
            print(orjson.dumps(doc).decode())
        else:
            kind = "built-in" if i.builtin else "user"
            state = f"NOT MAINTAINED: {i.problem}" if i.problem else f"{i.rows} rows, {len(i.columns)} columns"
            print(f"{i.name:<22}{i.resource:<20}{kind:<10}{state}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Rebuild the named view, or every view, from the current resources."""
    store, views = _open(args)
    try:
        names = [args.name] if args.name else None
        counts = store.run_write(lambda conn: views.rebuild(conn, names))
    finally:
        store.close()
    for name, rows in sorted(counts.items()):
        print(f"{name:<22}{rows} rows")
    return 0
