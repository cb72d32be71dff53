"""The report: the paper's Table 1 and figures from a warehouse, as HTML, Markdown and tables.

``build_report(db, out_dir, runs=None, level=None)`` writes everything (read-only access);
``table1(db, runs=None)`` returns Table 1 as polars frames ``(wide, long, overall)``.
"""

from ishwh.report.render import ReportResult, build_report
from ishwh.report.tables import table1

__all__ = ["ReportResult", "build_report", "table1"]
