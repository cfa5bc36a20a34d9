"""A standard FHIR R4 REST API over the store at /fhir, under the same tokens, policy and audit as /mcp."""
