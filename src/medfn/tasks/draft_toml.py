"""model.toml and function.toml text for `medfn import`, written line by line.

`TomlFile` writes tables, notes and values; a guessed value gets a `# REVIEW: why` comment on
the line above it, and the file keeps the list of its reviews for the command to print.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's basic-string escapes
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


class TomlFile:
    """A TOML file written line by line; every guess gets `# REVIEW: why` above its value."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.reviews: list[str] = []
        self.section = ""

    def table(self, header: str, comment: str = "") -> None:
        if self.lines:
            self.lines.append("")
        self.lines.append(header)
        self.section = header.strip("[]")
        if comment:
            self.note(comment)

    def note(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def review(self, why: str, key: str = "") -> None:
        self.lines.append(f"# REVIEW: {why}")
        where = ".".join(part for part in (self.section, key) if part)
        self.reviews.append(f"{where}: {why}")

    def set(self, key: str, value: Any, review: str = "") -> None:
        if review:
            self.review(review, key)
        line = f"{key} = {_toml_value(value)}"
        if len(line) > 100 and isinstance(value, list):  # one item a line, as model_store's own files
            line = f"{key} = [\n" + "".join(f"    {_toml_value(item)},\n" for item in value) + "]"
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
