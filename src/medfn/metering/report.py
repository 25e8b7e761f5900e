"""`medfn usage`: calls per API key and model, with the estimated Lambda cost."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from medfn.metering.pricing import PRICES_READ, lambda_cost
from medfn.metering.record import UsageRecord


@dataclass
class UsageLine:
    api_key_id: str
    model: str
    calls: int = 0
    billed_units: int = 0
    duration_ms: float = 0.0
    cost_usd: float = 0.0


def summarize(records: list[UsageRecord]) -> list[UsageLine]:
    lines: dict[tuple[str, str], UsageLine] = defaultdict(lambda: UsageLine("", ""))
    for usage in records:
        line = lines[(usage.api_key_id, usage.model)]
        line.api_key_id, line.model = usage.api_key_id, usage.model
        line.calls += 1
        line.billed_units += usage.billed_units
        line.duration_ms += usage.duration_ms
        line.cost_usd += lambda_cost(usage.duration_ms, usage.memory_mb)  # each call rounds on its own
    return [lines[k] for k in sorted(lines)]


def render(lines: list[UsageLine]) -> str:
    header = f"{'api key':<24} {'model':<24} {'calls':>8} {'billed':>8} {'mean ms':>9} {'est. USD':>12}"
    rows = [header, "-" * len(header)]
    for line in lines:
        mean = line.duration_ms / line.calls if line.calls else 0.0
        rows.append(
            f"{line.api_key_id:<24} {line.model:<24} {line.calls:>8} {line.billed_units:>8} {mean:>9.2f}"
            f" {line.cost_usd:>12.8f}"
        )
    total = sum(line.cost_usd for line in lines)
    rows.append(f"total estimated Lambda cost (arm64, prices {PRICES_READ}): ${total:.8f}")
    return "\n".join(rows)
