"""Pay-per-call metering: who called which model, for how long, and what it bills.

Every call that names a model yields one `UsageRecord`. In AWS it leaves as a CloudWatch
embedded-metric-format line (`EmfMeter`); under `medfn serve` it lands in a SQLite usage
store (`SqliteMeter`), where `medfn serve --api-keys` also enforces keys and tiers the way
API Gateway does (`KeyGate`). `MeteringMiddleware` connects these to the FastAPI app.
"""

from medfn.metering.emf import EmfMeter
from medfn.metering.keys import ApiKey, KeyGate, load_keys
from medfn.metering.middleware import Metering, MeteringMiddleware, from_environment
from medfn.metering.record import Meter, UsageRecord
from medfn.metering.sqlite_store import SqliteMeter
from medfn.metering.tiers import Tier, load_tiers

__all__ = [
    "ApiKey",
    "EmfMeter",
    "KeyGate",
    "Meter",
    "Metering",
    "MeteringMiddleware",
    "SqliteMeter",
    "Tier",
    "UsageRecord",
    "from_environment",
    "load_keys",
    "load_tiers",
]
