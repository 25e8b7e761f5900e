"""Tiers: the throttle and quota of a usage plan, read from a TOML file (infra/tiers.toml).

The CDK app turns each tier into an API Gateway usage plan; `medfn serve --api-keys`
enforces the same numbers locally, so a customer meets the same limits in both places.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERIODS = ("DAY", "WEEK", "MONTH")  # API Gateway's quota periods


@dataclass(frozen=True)
class Tier:
    name: str
    rate_limit: float  # steady requests per second (API Gateway's throttle rateLimit)
    burst_limit: int  # bucket size (throttle burstLimit)
    quota: int  # requests per period
    period: str = "MONTH"
    description: str = ""

    @classmethod
    def parse(cls, name: str, raw: dict[str, Any]) -> Tier:
        tier = cls(
            name=name,
            rate_limit=float(raw["rate_limit"]),
            burst_limit=int(raw["burst_limit"]),
            quota=int(raw["quota"]),
            period=str(raw.get("period", "MONTH")).upper(),
            description=str(raw.get("description", "")),
        )
        if tier.period not in PERIODS:
            raise ValueError(f"tier {name}: period must be one of {PERIODS}, not {tier.period!r}")
        if tier.rate_limit <= 0 or tier.burst_limit < 1 or tier.quota < 1:
            raise ValueError(f"tier {name}: rate_limit, burst_limit and quota must be positive")
        return tier


def parse_tiers(raw: dict[str, Any]) -> dict[str, Tier]:
    return {name: Tier.parse(name, spec) for name, spec in raw.get("tiers", {}).items()}


def load_tiers(path: Path) -> dict[str, Tier]:
    tiers = parse_tiers(tomllib.loads(path.read_text("utf-8")))
    if not tiers:
        raise ValueError(f"{path} defines no [tiers.<name>] table")
    return tiers
