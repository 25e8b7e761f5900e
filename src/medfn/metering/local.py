"""Metering for `medfn serve`: the SQLite usage store, and API keys when a keys file is given."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from medfn.config import discover_functions
from medfn.metering.keys import KeyGate, load_keys, period_start
from medfn.metering.middleware import Metering
from medfn.metering.sqlite_store import SqliteMeter

log = logging.getLogger(__name__)


def local_metering(functions: Path, usage_store: Path, api_keys: Path | None = None) -> Metering:
    meter = SqliteMeter(usage_store)
    # each model is billed at the memory its function.toml gives it, as in AWS
    memory = {config.model: config.memory_mb for config in discover_functions(functions)}
    gate = None
    if api_keys is not None:
        keys = load_keys(api_keys)
        now = time.time()
        # quotas survive a restart: count what each key already used this period
        used = {key.id: meter.calls_since(key.id, period_start(key.tier.period, now)) for key in keys}
        gate = KeyGate(keys, used)
        log.info("enforcing %d API keys from %s (tiers: %s)", len(keys), api_keys, sorted({k.tier.name for k in keys}))
    return Metering(meter=meter, gate=gate, memory_mb=memory)
