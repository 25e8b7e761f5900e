"""The upload queue, long-polled by a process of our own rather than by Lambda: `medfn work`.

A GPU function takes its uploads this way (an ECS service on GPU instances, infra's
gpu_workers.py): Lambda has no GPUs. The messages are the very ones Lambda's event source
mapping would hand SqsUploads (S3 notifications, EventBridge events, series checks), settled by
the same ScanWorker (medfn.sources._uploads.UploadSource), with the same outcome per message:

    receive (long poll, up to 10) -> settle each on its own thread -> delete what settled;
    a transient failure is left in the queue for SQS to redeliver (ApproximateReceiveCount is the
    attempt), and after the queue's maxReceiveCount its dead-letter queue takes it.

Messages are settled `concurrency` at a time, so the model's dynamic batcher (started by the
command) gathers the scans of different messages, and the slices of a series, into one run.
A message still in hand at half its visibility timeout has it extended, so a long series is
not delivered to a second worker meanwhile. `stop` (SIGTERM from ECS) ends the receiving: the
messages in hand are finished and deleted, any received after it are handed back at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from medfn.errors import TransientFailure
from medfn.pipeline.types import Announced, BatchSummary
from medfn.sources.sqs import from_message_body

log = logging.getLogger(__name__)

MAX_RECEIVE = 10  # SQS's most messages a receive returns
Settle = Callable[[Announced, int], BatchSummary]  # UploadSource.settle


@dataclass
class _InHand:
    message: dict[str, Any]
    future: Future[BatchSummary]
    visible_at: float  # monotonic time at which SQS would deliver it again


@dataclass
class WorkSummary:
    """What a run of the worker did, message by message and scan by scan."""

    received: int = 0
    deleted: int = 0  # settled: results, error records, duplicates, ignored
    left: int = 0  # transient failures, left in the queue for redelivery
    released: int = 0  # received after the stop, handed back at once
    extended: int = 0  # visibility extensions of messages still in hand
    scans: BatchSummary = field(default_factory=BatchSummary)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "deleted": self.deleted,
            "left_for_redelivery": self.left,
            "released": self.released,
            "visibility_extended": self.extended,
            **self.scans.as_dict(),
        }


class QueueWorker:
    def __init__(
        self,
        settle: Settle,
        queue_url: str,
        sqs: Any,
        concurrency: int = 8,
        wait_s: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settle, self.queue_url, self.sqs = settle, queue_url, sqs
        self.concurrency = max(1, concurrency)
        self.wait_s = wait_s
        self.clock = clock
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
        self.visibility_s = int(attributes["Attributes"]["VisibilityTimeout"])
        self.summary = WorkSummary()
        self._in_hand: dict[str, _InHand] = {}  # receipt handle -> the message and its settling
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="medfn-work")

    def run(self, stop: Callable[[], bool], until_empty: bool = False) -> WorkSummary:
        """Until `stop()` (checked between receives), or with `until_empty` until a receive finds
        the queue empty with nothing in hand; then finish what is in hand."""
        try:
            while not stop():
                self._finish_settled()
                self._extend_visibility()
                free = self.concurrency - len(self._in_hand)
                if free <= 0:
                    wait([h.future for h in self._in_hand.values()], timeout=1.0, return_when=FIRST_COMPLETED)
                    continue
                # a long poll while idle (cheap, and answers at once when a message comes); short ones
                # while messages are in hand, so those that settle are deleted and extended promptly
                messages = self._receive(min(MAX_RECEIVE, free), self.wait_s if not self._in_hand else 1)
                if stop():
                    self._release(messages)
                    break
                for message in messages:
                    self._start(message)
                if until_empty and not messages and not self._in_hand:
                    break
            while self._in_hand:  # the messages in hand are finished, whatever stopped us
                wait([h.future for h in self._in_hand.values()], timeout=1.0)
                self._finish_settled()
                self._extend_visibility()
        finally:
            self._pool.shutdown(wait=True)
        return self.summary

    def _receive(self, count: int, wait_s: int) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait_s,
            AttributeNames=["ApproximateReceiveCount"],
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        self.summary.received += len(messages)
        return messages

    def _start(self, message: dict[str, Any]) -> None:
        try:
            body = json.loads(message.get("Body") or "")
        except ValueError:
            body = None  # never valid: ignored (and deleted) as SqsUploads ignores it
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount") or 1)
        future = self._pool.submit(self.settle, from_message_body(body), attempt)
        self._in_hand[message["ReceiptHandle"]] = _InHand(message, future, self.clock() + self.visibility_s)

    def _finish_settled(self) -> None:
        """Delete the messages that settled; leave the failed ones for SQS to deliver again."""
        done = [receipt for receipt, hand in self._in_hand.items() if hand.future.done()]
        settled = []
        for receipt in done:
            hand = self._in_hand.pop(receipt)
            try:
                self.summary.scans.add(hand.future.result())
                settled.append(receipt)
            except TransientFailure as exc:
                self.summary.left += 1
                log.warning("message %s left for redelivery: %s", hand.message.get("MessageId"), exc.message)
            except Exception:  # a bug: the message comes back, and after maxReceiveCount goes to the DLQ
                self.summary.left += 1
                log.exception("message %s failed; left for redelivery", hand.message.get("MessageId"))
        for start in range(0, len(settled), MAX_RECEIVE):
            chunk = settled[start : start + MAX_RECEIVE]
            entries = [{"Id": str(i), "ReceiptHandle": receipt} for i, receipt in enumerate(chunk)]
            answer = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            failed = answer.get("Failed", [])
            self.summary.deleted += len(chunk) - len(failed)
            for failure in failed:  # delivered again later: the status table makes that a duplicate
                log.warning("could not delete a settled message (%s): it will be seen again", failure.get("Code"))

    def _extend_visibility(self) -> None:
        """Half the visibility timeout left on a message still in hand: give it a whole one again."""
        now = self.clock()
        for receipt, hand in self._in_hand.items():
            if hand.future.done() or hand.visible_at - now > self.visibility_s / 2:
                continue
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=self.visibility_s
                )
                hand.visible_at = now + self.visibility_s
                self.summary.extended += 1
            except Exception:  # it may be delivered again; the status table keeps one record
                log.warning("could not extend the visibility of message %s", hand.message.get("MessageId"))

    def _release(self, messages: list[dict[str, Any]]) -> None:
        """Received after the stop: visible again at once, for another worker."""
        for message in messages:
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
                self.summary.released += 1
            except Exception:  # it comes back after its visibility timeout instead
                log.warning("could not hand back message %s", message.get("MessageId"))
