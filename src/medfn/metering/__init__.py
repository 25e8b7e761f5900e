"""Pay-per-call metering: who called which model, for how long, and what it bills.

Every call that names a model yields one `UsageRecord`. In AWS it leaves as a CloudWatch
embedded-metric-format line (`EmfMeter`); under `medfn serve` it lands in a SQLite usage
store (`SqliteMeter`), where `medfn serve --api-keys` also enforces keys and tiers the way
API Gateway does (`KeyGate`). `MeteringMiddleware` connects these to the FastAPI app.

Import from the submodules: this package imports nothing itself, so the Lambda HTTP path
loads the middleware and the EMF writer only, never SQLite or the key store.
"""
