"""fhirgate's integer search offsets over an upstream's paging: `_offset` when it has one, else `next` links.

SearchPage.next_offset is an int (the service seals it into its own cursor), while FHIR R4 §3.1.1.5.5 leaves
paging to the server: a client may only follow the Bundle's `next` link. With `_offset` (HAPI, fhirgate's own
API) a page is one request. Without it, a page at offset N is reached by following `next` links from page 1;
the link that starts each recent page is remembered (keyed by the question and the offset, bounded LRU), so
reading page after page costs one request each, and only a forgotten offset walks again (at most max_pages).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirgate.errors import StoreError
from fhirgate.remote.client import FhirClient

__all__ = ["Bundle", "Pager", "Window", "bundle_entries", "has_next", "next_link"]

Bundle = dict[str, Any]
Params = list[tuple[str, str]]
_MAX_ENTRIES = 1000  # entries taken from one upstream page (a page is at most _count=100 matches plus includes)


def bundle_entries(bundle: Bundle) -> list[tuple[str, Any]]:
    """(search.mode, resource) of each entry holding a resource, at most _MAX_ENTRIES; mode defaults to match."""
    out: list[tuple[str, Any]] = []
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        if len(out) >= _MAX_ENTRIES:
            break
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        search = entry.get("search")
        mode = search.get("mode", "match") if isinstance(search, dict) else "match"
        out.append((mode if isinstance(mode, str) else "match", resource))
    return out


def next_link(bundle: Bundle) -> str | None:
    """The Bundle's `link[relation=next]` URL, or None."""
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def has_next(bundle: Bundle) -> bool:
    """True when the upstream says another page follows."""
    return next_link(bundle) is not None


@dataclass(frozen=True, slots=True)
class Window:
    """The requested slice of one upstream page: matches, includes, the page itself, and the next offset."""

    bundle: Bundle
    matches: list[Any]
    included: list[Any]
    next_offset: int | None


class Pager:
    """Maps (question, offset, count) onto upstream pages; thread-safe, with a bounded cache of next links."""

    def __init__(self, client: FhirClient, *, link_cache: int = 256, max_pages: int = 50) -> None:
        self._client = client
        self._links: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._size = link_cache
        self._max_pages = max_pages
        self._lock = threading.Lock()

    def window(
        self,
        kind: str,
        params: Params,
        first: Callable[[Params], Bundle],
        count: int,
        offset: int,
        *,
        offset_mode: bool,
    ) -> Window:
        """Matches [offset, offset + count) of the question `kind?params`, whose page 1 `first` fetches.

        Every entry whose search.mode is not `include` (or `outcome`) counts as a match, so $everything's
        pages (all entries are matches) and searches page alike.
        """
        key = kind + "?" + "&".join(f"{k}={v}" for k, v in params)
        if offset_mode:
            extra = [("_count", str(count))] + ([("_offset", str(offset))] if offset else [])
            bundle, position = first(extra), offset
        else:
            bundle, position = self._locate(key, first, count, offset)
        entries = bundle_entries(bundle)
        page_matches = [r for mode, r in entries if mode not in ("include", "outcome")]
        skip = max(0, offset - position)
        matches = page_matches[skip : skip + count]
        included = [r for mode, r in entries if mode == "include"] if matches else []
        end = position + len(page_matches)
        link = next_link(bundle)
        if link is not None and not offset_mode:
            self._remember((key, count, end), link)
        more = skip + count < len(page_matches) or link is not None
        next_offset = offset + len(matches) if more and matches else None
        return Window(bundle, matches, included, next_offset)

    def _locate(self, key: str, first: Callable[[Params], Bundle], count: int, offset: int) -> tuple[Bundle, int]:
        """The upstream page holding `offset` and the offset of its first match (cached link, else a walk)."""
        extra = [("_count", str(count))]
        if offset == 0:
            return first(extra), 0
        with self._lock:
            link = self._links.get((key, count, offset))
            if link is not None:
                self._links.move_to_end((key, count, offset))
        if link is not None:
            page = self._client.next_page({"link": [{"relation": "next", "url": link}]})
            if page is not None:
                return page, offset
        bundle, position = first(extra), 0
        for _ in range(self._max_pages):
            size = sum(1 for mode, _ in bundle_entries(bundle) if mode not in ("include", "outcome"))
            if position + size > offset:
                return bundle, position
            link = next_link(bundle)
            if link is not None:
                self._remember((key, count, position + size), link)
            following = self._client.next_page(bundle)
            if following is None or size == 0:
                return bundle, position  # the offset lies past the last page: an empty window
            bundle, position = following, position + size
        raise StoreError(f"the upstream FHIR server's paging is too deep to reach offset {offset} (no _offset support)")

    def _remember(self, key: tuple[str, int, int], link: str) -> None:
        with self._lock:
            self._links[key] = link
            self._links.move_to_end(key)
            while len(self._links) > self._size:
                self._links.popitem(last=False)
