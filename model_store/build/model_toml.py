"""model.toml text: the training scripts write it, `guards` rewrites its [guards] tables. No torch here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def toml(value: Any) -> str:
    """A TOML literal for a str, bool, int, float or list (a JSON string is a TOML string)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def _key(key: str) -> str:
    """Bare keys where TOML allows them, quoted otherwise (e.g. "model.onnx")."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _entry(key: str, value: Any) -> str:
    line = f"{_key(key)} = {toml(value)}"
    if len(line) <= 120 or not isinstance(value, (list, tuple)):
        return line
    # A long array one item a line, so that a diff of model.toml shows which item changed.
    return "\n".join([f"{_key(key)} = [", *(f"    {toml(v)}," for v in value), "]"])


def write_model_toml(path: Path, sections: list[tuple[Any, ...]]) -> None:
    """Write [section] blocks in order; a section name of None is the top-level table.

    A section is (name, table) or (name, table, comment): people read model.toml to add a
    model, and some values need a why; the comment goes in # lines under the header.
    """
    path.write_text(render(sections))
    print(f"wrote {path}")


def render(sections: list[tuple[Any, ...]]) -> str:
    """The text `write_model_toml` writes for `sections`."""
    lines: list[str] = []
    for name, table, *comment in sections:
        if name is not None:
            lines += ["", name]
        lines += [f"# {line}" for text in comment for line in text.splitlines()]
        lines += [_entry(key, value) for key, value in table.items()]
    return "\n".join(lines).lstrip("\n") + "\n"
