"""How a series' stability check is sent: in AWS, a delayed SQS message back to the function's own
queue; locally nothing is sent (`medfn watch` asks the series table what is due at every poll)."""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

from medfn.errors import StorageUnavailable
from medfn.pipeline.types import SeriesCheck

MAX_DELAY_S = 900  # SQS's longest DelaySeconds


class CheckSender(Protocol):
    def send(self, check: SeriesCheck, delay_s: float) -> None: ...


class SqsCheckSender:
    def __init__(self, queue_url: str, client: Any = None) -> None:
        if not queue_url:
            raise ValueError("set MEDFN_SERIES_QUEUE_URL to the function's own upload queue")
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def send(self, check: SeriesCheck, delay_s: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        delay = min(MAX_DELAY_S, max(0, math.ceil(delay_s)))
        try:
            self.client.send_message(
                QueueUrl=self.queue_url, MessageBody=json.dumps(check.as_message()), DelaySeconds=delay
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable("SQS send_message of a series check failed") from exc
