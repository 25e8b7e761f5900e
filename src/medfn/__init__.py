"""medfn: medical ONNX models as pay-per-call APIs and event-driven scan processors.

The package is the shared runtime that every function bundle carries. Heavy or optional
dependencies (FastAPI, pydicom, boto3) are imported by the modules that need them, not here,
so that each event path pays only for what it uses at cold start.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
