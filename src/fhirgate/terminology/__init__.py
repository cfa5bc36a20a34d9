"""Offline clinical terminology: ICD-10-CM hierarchy, a curated synonym list and codes seen in the practice's data.

A subsystem beside store/ and audit/: it may read the store file (read-only) but never imports service, mcp or cli.
See docs/terminology.md for sources, licences and matching rules.
"""

from fhirgate.terminology.lookup import Candidate, LookupResult, Terminology
from fhirgate.terminology.systems import ICD10CM, SYSTEMS, resolve_system

__all__ = ["ICD10CM", "SYSTEMS", "Candidate", "LookupResult", "Terminology", "resolve_system"]
