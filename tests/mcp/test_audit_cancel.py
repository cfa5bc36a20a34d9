"""A request cancelled while its handler runs (the client went away) still leaves exactly one audit record."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from mcp_support import principal

from fhirgate.audit.record import AuditRecord
from fhirgate.mcp.audit_hook import AuditMiddleware
from fhirgate.service.auditing import AuditWriter


class ListSink:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> int:
        self.records.append(record)
        return len(self.records)


@pytest.mark.anyio
async def test_cancelled_request_is_audited() -> None:
    sink = ListSink()
    middleware = AuditMiddleware(AuditWriter(sink), transport="stdio", principal=principal("user/*.rs"))
    ctx: Any = SimpleNamespace(
        request_id=7, method="tools/call", params={"name": "find_patients"}, meta=None, request=None
    )
    started = anyio.Event()

    async def slow_handler(_: Any) -> Any:
        started.set()
        await anyio.sleep(10)

    async with anyio.create_task_group() as tg:
        tg.start_soon(middleware, ctx, slow_handler)
        await started.wait()
        tg.cancel_scope.cancel()
    assert len(sink.records) == 1
    record = sink.records[0]
    assert record.outcome == "error"
    assert record.name == "find_patients"
    assert record.reason is not None
    assert record.reason.startswith("internal.")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
