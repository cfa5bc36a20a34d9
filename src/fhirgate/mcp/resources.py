"""MCP resources: `fhir://{type}/{id}` (one FHIR resource as JSON) and `patient://{id}/summary`.

Both go through the same audited Gateway use cases as the tools. A resource that does not exist,
or that the caller may not see, is JSON-RPC error -32602 (MCP 2026-07-28 "Resources": not found is
-32602, never empty contents); other refusals use the same code with a message naming the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
import orjson
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from fhirgate.errors import AuditError, FhirgateError, InternalError
from fhirgate.mcp.audit_hook import current_request
from fhirgate.service.gateway import Gateway

FHIR_TEMPLATE = "fhir://{resource_type}/{id}"
SUMMARY_TEMPLATE = "patient://{patient_id}/summary"


async def _read(uri: str, fn: Callable[[], dict[str, Any]]) -> str:
    try:
        data = await anyio.to_thread.run_sync(fn)
    except (AuditError, InternalError) as exc:
        raise MCPError(code=INTERNAL_ERROR, message=exc.message, data={"uri": uri}) from None
    except FhirgateError as exc:
        raise MCPError(code=INVALID_PARAMS, message=f"{exc.code}: {exc.message}", data={"uri": uri}) from None
    return orjson.dumps(data).decode()


def register_resources(server: MCPServer[Any], gateway: Gateway) -> None:
    """Add the resource templates to `server`, bound to `gateway`."""

    @server.resource(
        FHIR_TEMPLATE,
        name="fhir-resource",
        title="FHIR resource",
        description="One FHIR R4 resource as JSON, e.g. fhir://Observation/abc. Subject to your scopes.",
        mime_type="application/fhir+json",
    )
    async def fhir_resource(resource_type: str, id: str) -> str:
        ctx = current_request()
        uri = f"fhir://{resource_type}/{id}"
        data = await _read(uri, lambda: gateway.read_resource(ctx, resource_type, id, format="fhir"))
        # The resource itself, not the tool envelope.
        return orjson.dumps(orjson.loads(data)["resource"]).decode()

    @server.resource(
        SUMMARY_TEMPLATE,
        name="patient-summary",
        title="Patient summary",
        description="A bounded clinical summary of one patient (same content as the patient_summary tool).",
        mime_type="application/json",
    )
    async def patient_summary(patient_id: str) -> str:
        ctx = current_request()
        return await _read(f"patient://{patient_id}/summary", lambda: gateway.patient_summary(ctx, patient_id))
