"""Out-of-distribution guards, declared in model.toml `[guards]` by the training scripts.

    [guards.modality]     accept, photometric            image models    default policy "reject"
    [guards.vocabulary]   min_known_share                text models     default policy "warn"
    [guards.ranges]       [guards.ranges.features] name = [low, high]    tabular, vital signs    "warn"

An input outside what the model was trained on is refused with policy "reject" (a 422 that
says what lies outside), or answered with the reason in the answer's `warnings` with "warn".
A model without a table has no such guard.
"""

from __future__ import annotations

from typing import Any

from medfn.codecs import DecodedImage
from medfn.errors import UnprocessableInput

POLICIES = ("reject", "warn")
_DEFAULT_POLICY = {"modality": "reject", "vocabulary": "warn", "ranges": "warn"}
_MOST_LISTED = 10  # values outside their range listed one by one; the rest are counted


class Guards:
    def __init__(self, tables: dict[str, Any]) -> None:
        self.tables = tables

    def _policy(self, guard: str) -> str:
        return str(self.tables[guard].get("policy", _DEFAULT_POLICY[guard]))

    def _apply(self, guard: str, findings: list[str]) -> list[str]:
        """Findings as warnings, or the first as a refusal."""
        if findings and self._policy(guard) == "reject":
            raise UnprocessableInput(findings[0])
        return findings

    def modality(self, image: DecodedImage) -> list[str]:
        table = self.tables.get("modality")
        if table is None or image.source != "dicom":  # PNG and JPEG say neither
            return []
        findings = []
        accept, photometric = list(table.get("accept", [])), list(table.get("photometric", []))
        if accept and image.modality not in accept:
            findings.append(f"DICOM modality {image.modality or 'missing'}; this model reads {', '.join(accept)}")
        if photometric and image.photometric not in photometric:
            findings.append(
                f"DICOM photometric interpretation {image.photometric or 'missing'};"
                f" this model reads {', '.join(photometric)}"
            )
        return self._apply("modality", findings)

    def vocabulary(self, known: int, total: int) -> list[str]:
        table = self.tables.get("vocabulary")
        if table is None or not total:
            return []
        least = float(table.get("min_known_share", 0.0))
        if known / total >= least:
            return []
        finding = f"only {known} of {total} words are in this model's vocabulary (its training notes had {least:.0%}+)"
        return self._apply("vocabulary", [finding])

    def ranges(self, features: list[str], rows: list[list[float]], wheres: list[str]) -> list[str]:
        table = self.tables.get("ranges")
        if table is None:
            return []
        bounds: dict[str, list[float]] = table.get("features", {})
        findings = [
            f"{where}{name!r} = {value:g} lies outside the training range {bounds[name][0]:g} to {bounds[name][1]:g}"
            for row, where in zip(rows, wheres, strict=True)
            for name, value in zip(features, row, strict=True)
            if name in bounds and not bounds[name][0] <= value <= bounds[name][1]
        ]
        if len(findings) > _MOST_LISTED:
            findings = [*findings[:_MOST_LISTED], f"(and {len(findings) - _MOST_LISTED} more values outside)"]
        return self._apply("ranges", findings)

    def problems(self, features: list[str] | None = None) -> list[str]:
        """What is wrong with the tables themselves, for the load-time check."""
        problems = []
        for guard, table in self.tables.items():
            if guard not in _DEFAULT_POLICY:
                problems.append(f"[guards.{guard}] is not a guard; guards: {', '.join(_DEFAULT_POLICY)}")
            elif table.get("policy", _DEFAULT_POLICY[guard]) not in POLICIES:
                problems.append(f"[guards.{guard}] policy must be one of {', '.join(POLICIES)}")
        bounds = self.tables.get("ranges", {}).get("features", {})
        unknown = sorted(set(bounds) - set(features or []))
        if unknown:
            problems.append(f"[guards.ranges.features] names {unknown[0]!r}, which is not a feature")
        if any(not (isinstance(b, list) and len(b) == 2 and b[0] <= b[1]) for b in bounds.values()):
            problems.append("[guards.ranges.features] ranges must be [low, high]")
        return problems
