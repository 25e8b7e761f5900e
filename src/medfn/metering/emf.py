"""CloudWatch embedded metric format (EMF): metrics as one JSON log line per call.

Lambda ships stdout to CloudWatch Logs, which extracts the metrics declared under `_aws`
(the format is specified in the CloudWatch user guide, "Embedded metric format
specification"). Written by hand rather than through Powertools' Metrics: importing
Powertools costs cold-start time, and one orjson line is all a call needs (a few µs).
"""

from __future__ import annotations

import sys
from typing import IO

import orjson

from medfn.metering.record import UsageRecord

NAMESPACE = "medfn"
# Per customer and model (for invoices), and per model version (for operations).
DIMENSIONS = [["ApiKeyId", "Model"], ["Model", "ModelVersion"]]
METRICS = [
    {"Name": "Calls", "Unit": "Count"},
    {"Name": "BilledUnits", "Unit": "Count"},
    {"Name": "Duration", "Unit": "Milliseconds"},
]


class EmfMeter:
    def __init__(self, function: str, stream: IO[str] | None = None, namespace: str = NAMESPACE) -> None:
        self.function = function
        self.stream = stream
        self.directive = {"Namespace": namespace, "Dimensions": DIMENSIONS, "Metrics": METRICS}

    def record(self, usage: UsageRecord) -> None:
        line = orjson.dumps(
            {
                "_aws": {"Timestamp": int(usage.timestamp * 1000), "CloudWatchMetrics": [self.directive]},
                "ApiKeyId": usage.api_key_id,
                "Model": usage.model,
                "ModelVersion": usage.version,
                "Calls": 1,
                "BilledUnits": usage.billed_units,
                "Duration": round(usage.duration_ms, 3),
                # plain properties: searchable in Logs Insights, not metrics (no extra cost)
                "function": self.function,
                "status": usage.status,
                "memory_mb": usage.memory_mb,
                "request_id": usage.request_id,
            }
        )
        stream = self.stream or sys.stdout  # looked up per call: tests and Lambda swap stdout
        stream.write(line.decode() + "\n")
