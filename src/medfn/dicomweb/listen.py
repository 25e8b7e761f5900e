"""`medfn listen`: a DICOM Storage SCP (pynetdicom) for sites without DICOMweb.

It answers C-ECHO, and C-STORE for the storage SOP classes and transfer syntaxes of
medfn.dicomweb.conformance (a deflated data set is refused at association: its presentation
context is rejected, "transfer syntaxes not supported"). Each instance is read by the same
guarded header reader as STOW-RS, then handed to the sink, so it enters the pipeline exactly as
an upload does. C-STORE statuses sent back:

    0000  stored
    C000  cannot understand: not DICOM, truncated, a UID that is no UID
    A900  the data set's SOP class or instance is not the one the request announced
    C122  deflated inside the data set (cannot be, but refused if it is)
    A700  out of resources: the upload storage did not take it (the sender may retry)
    0110  processing failure: anything unexpected (its type logged, never its text)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medfn.dicomweb import conformance as dc
from medfn.dicomweb.cstore import check_ae_title
from medfn.dicomweb.sinks import InstanceSink
from medfn.errors import StorageUnavailable, UnprocessableInput, UnsupportedMediaType
from medfn.studies.headers import read_header

if TYPE_CHECKING:
    from pynetdicom.events import Event
    from pynetdicom.transport import ThreadedAssociationServer

log = logging.getLogger(__name__)


class StoreListener:
    def __init__(
        self,
        sink: InstanceSink,
        ae_title: str = "MEDFN",
        host: str = "127.0.0.1",
        port: int = 11112,
        calling_aes: Sequence[str] = (),
    ) -> None:
        self.sink = sink
        self.ae_title = check_ae_title(ae_title)
        self.host, self.port = host, port
        self.calling_aes = [check_ae_title(t) for t in calling_aes]  # empty: any calling AE title
        self.stored = 0
        self.failed = 0
        self._server: ThreadedAssociationServer | None = None

    def _ae(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True  # an association for another AE title is someone else's
        if self.calling_aes:
            ae.require_calling_aet = self.calling_aes
        ae.add_supported_context(dc.VERIFICATION, list(dc.TRANSFER_SYNTAXES)[:2])
        for sop_class in dc.STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, list(dc.TRANSFER_SYNTAXES))
        ae.maximum_associations = 8
        return ae

    def start(self) -> None:
        """Listen in background threads (for tests and embedding); `stop()` ends it."""
        from pynetdicom import evt

        self._server = self._ae().start_server(
            (self.host, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.handle_store)]
        )

    def serve_forever(self) -> None:
        from pynetdicom import evt

        self._ae().start_server((self.host, self.port), block=True, evt_handlers=[(evt.EVT_C_STORE, self.handle_store)])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def handle_store(self, event: Event) -> int:
        status = self._store(event)
        if status == 0x0000:
            self.stored += 1
        else:
            self.failed += 1
        return status

    def _store(self, event: Event) -> int:
        request: Any = event.request
        try:
            data = event.encoded_dataset(include_meta=True)
            header = read_header(data)
            dc.check_pixels(data)
        except UnsupportedMediaType:
            return self._refused(dc.TRANSFER_SYNTAX_NOT_SUPPORTED, "deflated data set")
        except UnprocessableInput as exc:
            return self._refused(dc.CANNOT_UNDERSTAND, exc.message)
        except Exception as exc:
            return self._refused(dc.PROCESSING_FAILURE, f"unexpected {type(exc).__name__} reading the header")
        if (header.sop_class_uid, header.sop_instance_uid) != (
            str(request.AffectedSOPClassUID),
            str(request.AffectedSOPInstanceUID),
        ):
            return self._refused(dc.DOES_NOT_MATCH, "the data set is not the instance the request announced")
        try:
            where = self.sink.put(header, data)
        except StorageUnavailable as exc:
            return self._refused(dc.OUT_OF_RESOURCES, exc.message)
        except Exception as exc:
            return self._refused(dc.PROCESSING_FAILURE, f"unexpected {type(exc).__name__} storing it")
        log.info("C-STORE from %s: SOP %s stored at %s", _calling(event), header.sop_instance_uid, where)
        return 0x0000

    def _refused(self, status: int, reason: str) -> int:
        log.warning("C-STORE refused with status %04X: %s", status, reason)
        return status


def _calling(event: Event) -> str:
    try:
        return str(event.assoc.requestor.ae_title)
    except Exception:
        return "?"
