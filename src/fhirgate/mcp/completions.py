"""MCP completion/complete: argument suggestions for fhirgate's prompts and resource templates.

Only values that are not patient data are ever suggested: FHIR resource types (the same list the
tools already publish as an enum in their input schemas) and week start dates. Arguments that take
an id (`patient_id`, `id`) always complete to nothing, because suggesting ids would disclose which
records exist. Completion reads no data and makes no access decision, so it needs no policy.
An unknown prompt or resource template is JSON-RPC error -32602 (MCP 2025-11-25 "Completion", Error
handling: invalid prompt name is -32602); an argument without suggestions gets an empty list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    CompletionArgument,
    PromptReference,
    ResourceTemplateReference,
)

from fhirgate.core.fhir.definitions import SUPPORTED_TYPES
from fhirgate.mcp.prompts import PROMPT_ARGUMENTS, unknown_prompt
from fhirgate.mcp.resources import FHIR_TEMPLATE, SUMMARY_TEMPLATE

# MCP "Completion": a response carries at most 100 values.
MAX_VALUES = 100
# How many week starts (Mondays, newest first) weekly_noshow_review's week_start suggests.
WEEKS_SUGGESTED = 12

EMPTY = Completion(values=[], total=0, has_more=False)


def _matching(candidates: Sequence[str], prefix: str) -> Completion:
    """Candidates starting with `prefix` (case-insensitive), in their given order, at most MAX_VALUES."""
    wanted = prefix.strip().lower()
    found = [c for c in candidates if c.lower().startswith(wanted)]
    return Completion(values=found[:MAX_VALUES], total=len(found), has_more=len(found) > MAX_VALUES)


def week_starts(today: date, count: int = WEEKS_SUGGESTED) -> list[str]:
    """The Monday of `today`'s week and the Mondays before it, newest first, as YYYY-MM-DD."""
    monday = today - timedelta(days=today.weekday())
    return [(monday - timedelta(weeks=n)).isoformat() for n in range(count)]


def complete(
    ref: PromptReference | ResourceTemplateReference,
    argument: CompletionArgument,
    *,
    today: Callable[[], date] = date.today,
) -> Completion:
    """Suggestions for one argument of a prompt or resource template; MCPError -32602 for an unknown ref."""
    if isinstance(ref, PromptReference):
        if ref.name not in PROMPT_ARGUMENTS:
            raise unknown_prompt(ref.name)
        if ref.name == "weekly_noshow_review" and argument.name == "week_start":
            return _matching(week_starts(today()), argument.value)
        return EMPTY  # patient_id and anything else: ids are never suggested
    if ref.uri == FHIR_TEMPLATE:
        if argument.name == "resource_type":
            return _matching(SUPPORTED_TYPES, argument.value)
        return EMPTY
    if ref.uri == SUMMARY_TEMPLATE:
        return EMPTY
    known = ", ".join((FHIR_TEMPLATE, SUMMARY_TEMPLATE))
    raise MCPError(
        INVALID_PARAMS,
        f"unknown resource template {ref.uri[:200]!r}; templates: {known}",
        data={"uri": ref.uri[:200]},
    )


def register_completions(server: MCPServer[Any]) -> None:
    """Serve completion/complete on `server` (registering it also declares the `completions` capability)."""

    async def handle(ctx: ServerRequestContext[Any, Any], params: CompleteRequestParams) -> CompleteResult:
        return CompleteResult(completion=complete(params.ref, params.argument))

    server._lowlevel_server.add_request_handler("completion/complete", CompleteRequestParams, handle)
