"""fhirgate: a practice's FHIR R4 data served to AI assistants over MCP, SMART-scoped and audited."""

__version__ = "0.1.0"
