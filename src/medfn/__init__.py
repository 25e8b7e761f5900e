"""medfn: medical ONNX models as pay-per-call APIs and event-driven scan processors.

The package is the shared runtime that every function bundle carries. Heavy or optional
dependencies (FastAPI, pydicom, boto3) are imported by the modules that need them, not here,
so that each event path pays only for what it uses at cold start.
"""

from collections.abc import Callable
from importlib import import_module
from typing import Any

__all__ = ["__version__"]

__version__ = "0.1.0"


def _lazy_names(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A package's `__getattr__` (PEP 562): each public name imports its module at first use."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{homes[name]}"), name)

    return __getattr__
