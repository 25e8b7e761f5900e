"""What every event source is: a key-only predicate, and a handler built once per function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from medfn.function import LoadedFunction


class EventSource(Protocol):
    """As Mangum's handlers: `infer` looks only at an event's keys, never at its content."""

    name: str

    def __init__(self, function: LoadedFunction) -> None: ...

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool: ...

    def __call__(self, event: dict[str, Any], context: Any) -> Any: ...
