"""The remote FhirStore backend: fhirgate's policy, minimization and audit in front of any FHIR R4 server.

RemoteStore (read side of the FhirStore contract over fhirgate.remote.FhirClient) and the mapping of upstream
failures to tool errors; see docs/remote-fhir.md.
"""

from fhirgate.store.remote.errors import RemoteStoreError, UpstreamThrottled, translate
from fhirgate.store.remote.store import READ_ONLY, RemoteStore

__all__ = ["READ_ONLY", "RemoteStore", "RemoteStoreError", "UpstreamThrottled", "translate"]
