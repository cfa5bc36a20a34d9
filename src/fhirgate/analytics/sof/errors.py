"""Errors of the SQL on FHIR engine: a view the spec forbids, and a view that fails on a resource."""

from __future__ import annotations

from fhirgate.errors import FhirgateError


class ViewDefinitionError(FhirgateError):
    """The ViewDefinition breaks a rule of SQL on FHIR v2; `location` is the JSON path of the problem."""

    code = "invalid-view"

    def __init__(self, location: str, problem: str) -> None:
        super().__init__(f"ViewDefinition {location}: {problem}")
        self.location = location
        self.problem = problem


class ViewEvaluationError(FhirgateError):
    """Evaluating a valid view on one resource broke a runtime rule (cardinality, non-boolean where)."""

    code = "view-evaluation"

    def __init__(self, location: str, problem: str, resource_ref: str | None = None) -> None:
        where = f" on {resource_ref}" if resource_ref else ""
        super().__init__(f"ViewDefinition {location}{where}: {problem}")
        self.location = location
        self.problem = problem
        self.resource_ref = resource_ref
