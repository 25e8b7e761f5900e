"""PACS on both ends: DICOMweb STOW-RS and DIMSE C-STORE in, results stored back (docs/pacs.md).

    multipart.py     a multipart/related STOW-RS body split into its parts, strictly and bounded
    stow.py          each part checked (medfn.studies.read_header) and stored; the Store Instances Response
    routes.py        POST /dicomweb/studies[/{study}]: the FastAPI router create_app adds for a sink
    sinks.py         InstanceSink: FolderSink (DIR/incoming, for `medfn watch`), S3Sink (the upload bucket)
    listen.py        StoreListener: the Storage SCP of `medfn listen` (C-ECHO, C-STORE)
    conformance.py   the SOP classes and transfer syntaxes taken, and the failure codes answered
    destination.py   ResultDestination; DicomwebDestination (STOW-RS out); destination_from_env
    cstore.py        CStoreDestination: results out by C-STORE to a configured AE
    credentials.py   the destination's credentials: environment, or Secrets Manager
    delivery.py      bounded retries with backoff, shared by both destinations

pydicom, pynetdicom, dicomweb-client and boto3 load inside the functions that use them; the
names below load their module on first use (PEP 562), so importing this package costs nothing.
"""

from medfn import _lazy_names

# Public name -> the module that defines it, imported when the name is first used.
_HOMES = {
    "CStoreDestination": "cstore",
    "DicomwebDestination": "destination",
    "FolderSink": "sinks",
    "InstanceSink": "sinks",
    "ResultDestination": "destination",
    "S3Sink": "sinks",
    "StoreListener": "listen",
    "destination_from_env": "destination",
    "dicomweb_router": "routes",
}
__all__ = sorted(_HOMES)

__getattr__ = _lazy_names(__name__, _HOMES)
