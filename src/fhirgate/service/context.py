"""Who is asking and through which door: the per-request context every use case receives.

The MCP edge builds one RequestContext per inbound request; the service writes exactly one audit
record for it and marks the context `audited`, so the edge knows not to write a second one.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from fhirgate.core.policy.principal import Principal


@dataclass(slots=True)
class RequestContext:
    """One request: the verified principal, request id, transport and MCP method/name.

    `audited` turns True once the request's single audit record is written (by a use case or by
    the edge); `started` is a perf_counter reading for the record's latency.
    """

    principal: Principal
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    transport: str = "in-memory"
    method: str = "tools/call"
    name: str | None = None
    client_address: str | None = None
    audited: bool = False
    started: float = field(default_factory=time.perf_counter)
    # Set by the service once governance has placed the principal (for the audit record).
    role: str | None = None
    purpose: str | None = None
    break_glass: bool = False

    def elapsed_ms(self) -> float:
        """Milliseconds since the request started."""
        return (time.perf_counter() - self.started) * 1000.0
