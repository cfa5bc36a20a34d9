"""Practice reports: predefined, parameterized SELECTs over the practice views with a headline and definition."""

from fhirgate.analytics.reports.registry import (
    ReportContext,
    ReportResult,
    ReportSpec,
    get_report,
    report_names,
    reports,
    run,
)

__all__ = ["ReportContext", "ReportResult", "ReportSpec", "get_report", "report_names", "reports", "run"]
