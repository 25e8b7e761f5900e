"""Results out by DIMSE C-STORE, for a PACS without DICOMweb: pynetdicom as a Storage SCU.

One association per delivery, proposing each instance's SOP class in the transfer syntax it is
encoded in (no transcoding). C-STORE statuses (PS3.4 B.2.3): success and the warnings (B000,
B006, B007) count as stored; A7xx (out of resources), a refused or lost association, or no
answer are retried; any other failure, or a SOP class the PACS does not accept, is a refusal.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from medfn.dicomweb.delivery import RetryPolicy, datasets_of
from medfn.errors import BadRequest, StorageUnavailable, UnprocessableInput

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pynetdicom.association import Association

log = logging.getLogger(__name__)

_STORED = {0x0000, 0xB000, 0xB006, 0xB007}
_ADDRESS = re.compile(r"(?P<ae>[^@]{1,16})@(?P<host>[^:@]+|\[[0-9a-fA-F:]+\]):(?P<port>[0-9]{1,5})")


def check_ae_title(title: str) -> str:
    """1 to 16 characters of printable ASCII, not all spaces, no backslash (PS3.5 6.2, AE)."""
    if not 1 <= len(title) <= 16 or not title.strip() or "\\" in title or not all(" " <= c <= "~" for c in title):
        raise BadRequest("an AE title is 1 to 16 printable ASCII characters, without a backslash")
    return title


class CStoreDestination:
    def __init__(
        self,
        called_ae: str,
        host: str,
        port: int,
        calling_ae: str = "MEDFN",
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.called_ae, self.calling_ae = check_ae_title(called_ae), check_ae_title(calling_ae)
        if not 0 < port < 65536:
            raise BadRequest("a C-STORE destination's port is 1 to 65535")
        self.host, self.port = host, port
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s

    @classmethod
    def parse(
        cls, text: str, calling_ae: str = "MEDFN", retry: RetryPolicy | None = None, timeout_s: float = 30.0
    ) -> CStoreDestination:
        """From "AET@host:port" (MEDFN_CSTORE_DESTINATION)."""
        match = _ADDRESS.fullmatch(text.strip())
        if match is None:
            raise BadRequest('MEDFN_CSTORE_DESTINATION must read "AET@host:port", e.g. "ORTHANC@pacs.example:4242"')
        host = match["host"].strip("[]")
        return cls(match["ae"], host, int(match["port"]), calling_ae, retry, timeout_s)

    def __repr__(self) -> str:
        return f"CStoreDestination({self.called_ae}@{self.host}:{self.port})"

    def deliver(self, instances: list[bytes]) -> None:
        datasets = datasets_of(instances)
        if datasets:
            self.retry.run(partial(self._send, datasets), f"C-STORE of {len(datasets)} instances to {self!r}")

    def _send(self, datasets: Sequence[Dataset]) -> None:
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = self.timeout_s
        for sop_class, syntax in sorted(
            {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}
        ):
            ae.add_requested_context(sop_class, syntax)
        assoc = ae.associate(self.host, self.port, ae_title=self.called_ae)
        if not assoc.is_established:
            raise StorageUnavailable(f"{self!r} did not take an association (unreachable, rejected or aborted)")
        try:
            for ds in datasets:
                self._store_one(assoc, ds)
        finally:
            if assoc.is_established:
                assoc.release()

    def _store_one(self, assoc: Association, ds: Dataset) -> None:
        try:
            status = assoc.send_c_store(ds)
        except ValueError as exc:  # no accepted presentation context for its SOP class and syntax
            raise UnprocessableInput(f"{self!r} does not accept SOP class {ds.SOPClassUID}") from exc
        except RuntimeError as exc:  # the association went away under us
            raise StorageUnavailable(f"{self!r} dropped the association") from exc
        code = int(getattr(status, "Status", -1)) if status else -1
        if code in _STORED:
            return
        if code == -1:
            raise StorageUnavailable(f"{self!r} did not answer a C-STORE (timeout or aborted association)")
        if 0xA700 <= code <= 0xA7FF:
            raise StorageUnavailable(f"{self!r} is out of resources (C-STORE status {code:04X})")
        raise UnprocessableInput(f"{self!r} refused an instance (C-STORE status {code:04X})")
