"""Tayori's client for a CRM: enqueue jobs into Tayori's partitioned streams and
read its events with recovery. See docs/crm.md in the Tayori repository."""

from .cancels import Cancel
from .client import PIPELINE_CHUNK, ReplicationError, Tayori, rfc3339
from .consumer import TERMINAL_TYPES, ConsumerStats, Event, Handler, RecentIds, ResultsConsumer
from .job_types import Job
from .layout import LayoutError, job_stream, partition_of, results_stream

__all__ = [
    "PIPELINE_CHUNK",
    "TERMINAL_TYPES",
    "Cancel",
    "ConsumerStats",
    "Event",
    "Handler",
    "Job",
    "LayoutError",
    "RecentIds",
    "ReplicationError",
    "ResultsConsumer",
    "Tayori",
    "job_stream",
    "partition_of",
    "results_stream",
    "rfc3339",
]
