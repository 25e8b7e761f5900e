"""Pay-per-call metering: who called which model, for how long, and what it bills.

Every call that names a model yields one `UsageRecord`. In AWS it leaves as a CloudWatch
embedded-metric-format line (`EmfMeter`); under `medfn serve` it lands in a SQLite usage
store (`SqliteMeter`), where `medfn serve --api-keys` also enforces keys and tiers the way
API Gateway does (`KeyGate`). `MeteringMiddleware` connects these to the FastAPI app.

The names below load their module on first use (PEP 562), so the Lambda HTTP path loads the
middleware and the EMF writer only, never SQLite or the key store.
"""

from medfn import _lazy_names

# Public name -> the module that defines it, imported when the name is first used.
_HOMES = {
    "EmfMeter": "emf",
    "KeyGate": "keys",
    "Meter": "record",
    "Metering": "middleware",
    "MeteringMiddleware": "middleware",
    "SqliteMeter": "sqlite_store",
    "UsageRecord": "record",
    "lambda_cost": "pricing",
    "local_metering": "local",
    "read_usage": "sqlite_store",
}
__all__ = sorted(_HOMES)

__getattr__ = _lazy_names(__name__, _HOMES)
