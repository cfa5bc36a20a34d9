"""SQL on FHIR v2 ViewDefinitions: validate, compile and run them over FHIR resources."""

from fhirgate.analytics.sof.errors import ViewDefinitionError, ViewEvaluationError
from fhirgate.analytics.sof.runner import ViewPlan, compile_view, run_view
from fhirgate.analytics.sof.viewdef import Column, Constant, Select, ViewDefinition, load_view

__all__ = [
    "Column",
    "Constant",
    "Select",
    "ViewDefinition",
    "ViewDefinitionError",
    "ViewEvaluationError",
    "ViewPlan",
    "compile_view",
    "load_view",
    "run_view",
]
