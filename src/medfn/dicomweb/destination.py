"""Results out: our SEG and SR stored into the PACS the study came from.

    ResultDestination      what the pipeline calls: deliver(instances), idempotent
    DicomwebDestination    STOW-RS with dicomweb-client, to MEDFN_DICOMWEB_URL
    CStoreDestination      DIMSE C-STORE with pynetdicom, to MEDFN_CSTORE_DESTINATION (cstore.py)
    destination_from_env   the one the environment names, or None

Delivering the same instances again is harmless: our results have stable SOP Instance UIDs
(medfn.studies.provenance), and a PACS files an instance it already has under the same UID.

How a destination's answers are sorted:
    connection refused, timeout, HTTP 5xx, 401, 403, 404, 408, 429,
    every instance refused for want of resources (A7xx)       -> retried (RetryPolicy), then
                                                                 StorageUnavailable (retryable)
    HTTP 400, 409, 413, 415, 422, some instances refused       -> UnprocessableInput, at once
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from medfn.dicomweb.credentials import Credentials, CredentialSource
from medfn.dicomweb.cstore import CStoreDestination
from medfn.dicomweb.delivery import RetryPolicy, datasets_of
from medfn.errors import BadRequest, MedfnError, StorageUnavailable, UnprocessableInput

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["CStoreDestination", "DicomwebDestination", "ResultDestination", "destination_from_env"]

_REFUSALS = {400, 409, 413, 415, 422}  # the destination will not take these instances: retrying repeats it
_CHUNK = 1 << 30  # dicomweb-client sends bodies above this with chunked encoding, which not every server takes


class ResultDestination(Protocol):
    def deliver(self, instances: list[bytes]) -> None:
        """Store them at the destination; idempotent (same SOP Instance UIDs again is fine);
        raise medfn.errors.StorageUnavailable when the destination is down after bounded retries."""
        ...


class DicomwebDestination:
    def __init__(
        self,
        url: str,
        credentials: CredentialSource | Credentials | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise BadRequest("the DICOMweb destination URL must start with http:// or https://")
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"DicomwebDestination({self.url!r})"

    def deliver(self, instances: list[bytes]) -> None:
        by_study: dict[str, list[Dataset]] = {}
        for ds in datasets_of(instances):
            by_study.setdefault(str(ds.StudyInstanceUID), []).append(ds)
        for study, datasets in by_study.items():
            self.retry.run(partial(self._store, study, datasets), f"STOW-RS of {len(datasets)} instances to {self.url}")

    def _store(self, study: str, datasets: Sequence[Dataset]) -> None:
        import requests
        from dicomweb_client import DICOMwebClient

        credentials = self.credentials.get() if isinstance(self.credentials, CredentialSource) else self.credentials
        session = requests.Session()
        if credentials is not None:
            session.auth = credentials.basic()
            session.headers.update(credentials.headers())
        client = DICOMwebClient(self.url, session=session, timeout=self.timeout_s, chunk_size=_CHUNK)
        client.set_http_retry_params(retry=False)  # ours are bounded and logged (RetryPolicy)
        try:
            answer = client.store_instances(list(datasets), study_instance_uid=study)
        except requests.HTTPError as exc:
            raise _refusal(exc.response) from exc
        except (requests.RequestException, OSError) as exc:
            raise StorageUnavailable(f"the DICOMweb destination did not answer ({type(exc).__name__})") from exc
        except ValueError as exc:  # an answer that is not DICOM JSON
            raise StorageUnavailable("the DICOMweb destination's answer could not be read") from exc
        finally:
            session.close()
        _check_stored(_failure_reasons(answer), len(datasets))


def _refusal(response: Any) -> MedfnError:
    status = int(getattr(response, "status_code", 0) or 0)
    reasons: list[int] = []
    try:
        import pydicom

        reasons = _failure_reasons(pydicom.Dataset.from_json(response.json()))
    except Exception:  # no body, or not DICOM JSON: the status says enough
        pass
    detail = f" (Failure Reasons {', '.join(f'{r:04X}' for r in reasons)})" if reasons else ""
    if status in _REFUSALS:
        return UnprocessableInput(f"the DICOMweb destination refused the instances: HTTP {status}{detail}")
    return StorageUnavailable(f"the DICOMweb destination answered HTTP {status}{detail}")


def _failure_reasons(answer: Any) -> list[int]:
    reasons = []
    for item in getattr(answer, "FailedSOPSequence", None) or []:
        reason = item.get("FailureReason")
        reasons.append(int(reason) if reason is not None else 0x0110)
    return reasons


def _check_stored(reasons: list[int], sent: int) -> None:
    if not reasons:
        return
    codes = ", ".join(f"{r:04X}" for r in reasons)
    if len(reasons) == sent and all(0xA700 <= r <= 0xA7FF for r in reasons):
        raise StorageUnavailable(f"the destination is out of resources (Failure Reasons {codes})")
    raise UnprocessableInput(f"the destination refused {len(reasons)} of {sent} instances (Failure Reasons {codes})")


def destination_from_env(env: Mapping[str, str] | None = None) -> ResultDestination | None:
    """`MEDFN_DICOMWEB_URL` (credentials: medfn.dicomweb.credentials) or `MEDFN_CSTORE_DESTINATION`
    ("AET@host:port", calling AE title `MEDFN_CSTORE_CALLING_AE`, default MEDFN); both take
    `MEDFN_DESTINATION_ATTEMPTS` (4) and `MEDFN_DESTINATION_TIMEOUT_S` (30). None: neither set."""
    env = os.environ if env is None else env
    url, cstore = env.get("MEDFN_DICOMWEB_URL", "").strip(), env.get("MEDFN_CSTORE_DESTINATION", "").strip()
    if url and cstore:
        raise BadRequest("set MEDFN_DICOMWEB_URL or MEDFN_CSTORE_DESTINATION, not both")
    if not (url or cstore):
        return None
    try:
        retry = RetryPolicy(attempts=max(1, int(env.get("MEDFN_DESTINATION_ATTEMPTS", "4"))))
        timeout_s = float(env.get("MEDFN_DESTINATION_TIMEOUT_S", "30"))
    except ValueError:
        raise BadRequest(
            "MEDFN_DESTINATION_ATTEMPTS must be a whole number, MEDFN_DESTINATION_TIMEOUT_S a number"
        ) from None
    if url:
        return DicomwebDestination(url, CredentialSource(env), retry, timeout_s)
    return CStoreDestination.parse(cstore, env.get("MEDFN_CSTORE_CALLING_AE", "MEDFN"), retry, timeout_s)
