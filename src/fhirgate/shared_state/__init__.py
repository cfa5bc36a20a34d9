"""State that several stateless fhirgate workers must share beyond the database: break-glass grants (grants)."""
