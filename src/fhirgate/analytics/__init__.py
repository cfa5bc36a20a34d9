"""Analytics over the FHIR store: SQL on FHIR v2 view definitions (`sof`) and materialized practice views."""
