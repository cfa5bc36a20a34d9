"""Upstream FHIR R4 servers: a typed client (fhirgate.remote.client) with fhirgate's own SMART Backend
Services credentials (fhirgate.remote.auth) and one error subtree (fhirgate.remote.errors).

The FhirStore backend over it is fhirgate.store.remote; see docs/remote-fhir.md.
"""

from fhirgate.remote.auth import BackendServicesAuth, StaticTokenAuth, UpstreamAuth
from fhirgate.remote.client import FhirClient
from fhirgate.remote.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamForbidden,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRefused,
    UpstreamUnavailable,
)

__all__ = [
    "BackendServicesAuth",
    "FhirClient",
    "StaticTokenAuth",
    "UpstreamAuth",
    "UpstreamAuthFailed",
    "UpstreamError",
    "UpstreamForbidden",
    "UpstreamMalformed",
    "UpstreamRateLimited",
    "UpstreamRefused",
    "UpstreamUnavailable",
]
