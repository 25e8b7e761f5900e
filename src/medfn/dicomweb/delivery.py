"""What both destinations share: bounded retries with exponential backoff, and our own Part-10
bytes read back as datasets for the client libraries (which send datasets, not files).

A failure raised as StorageUnavailable is retried; any other error stops at once (a refusal
that a second try would only repeat). After the last attempt the StorageUnavailable goes to the
caller: the pipeline keeps the result in storage and leaves a retryable error record.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medfn.errors import StorageUnavailable, UnprocessableInput

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    first_wait_s: float = 0.5  # before the second; doubled for each next one
    max_wait_s: float = 8.0

    def run(self, action: Callable[[], None], what: str, sleep: Callable[[float], None] = time.sleep) -> None:
        wait = self.first_wait_s
        for attempt in range(1, max(1, self.attempts) + 1):
            try:
                action()
                return
            except StorageUnavailable as exc:
                if attempt >= self.attempts:
                    raise StorageUnavailable(f"{what} failed {attempt} times; last: {exc.message}") from exc
                pause = wait * (0.5 + random.random() / 2)  # jitter: senders that failed together part ways
                log.warning(
                    "%s failed (attempt %d of %d): %s; again in %.1f s",
                    what,
                    attempt,
                    self.attempts,
                    exc.message,
                    pause,
                )
                sleep(pause)
                wait = min(wait * 2, self.max_wait_s)


def datasets_of(instances: Sequence[bytes]) -> list[Dataset]:
    """Part-10 bytes (ours: SEG and SR) as pydicom datasets, file meta included."""
    import pydicom

    datasets: list[Dataset] = []
    for index, data in enumerate(instances):
        try:
            datasets.append(pydicom.dcmread(io.BytesIO(data)))
        except Exception as exc:
            raise UnprocessableInput(f"result instance {index} to deliver is not a readable DICOM file") from exc
    return datasets
