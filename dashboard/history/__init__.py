"""History: one query interface (``HistoryStore``), two backends (SQLite, InfluxDB).

from dashboard.history.sqlite import SqliteHistory      # the embedded store, read-only
from dashboard.history.influx import InfluxHistory      # InfluxQL over /query
"""

from dashboard.history.base import (
    EVENT_TYPES,
    REVIEW_VERDICTS,
    ActivityRow,
    CoverageRow,
    DeviceRow,
    EventRow,
    GapRow,
    HealthRow,
    HistoryError,
    HistoryStore,
    InterventionRow,
    ReviewRow,
    SeriesChannel,
    SeriesRows,
)

__all__ = [
    "EVENT_TYPES",
    "REVIEW_VERDICTS",
    "ActivityRow",
    "CoverageRow",
    "DeviceRow",
    "EventRow",
    "GapRow",
    "HealthRow",
    "HistoryError",
    "HistoryStore",
    "InterventionRow",
    "ReviewRow",
    "SeriesChannel",
    "SeriesRows",
]
