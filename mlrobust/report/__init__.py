"""Reporting: a run's result as typed records, its JSON, and its plots."""

from mlrobust.report.files import write

__all__ = ["write"]
