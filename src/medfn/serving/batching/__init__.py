"""Server-side dynamic batching: requests for one model version run together, as Triton's.

Only servers batch (`medfn serve`, the containers): under Lambda one environment serves one
request at a time, so there is nothing to gather and models run inline. This package knows
nothing else of medfn: the plane gives each model its batcher (InferencePlane.start_batchers).
"""

from medfn.serving.batching.batcher import DynamicBatcher
from medfn.serving.batching.policy import BatchingPolicy
from medfn.serving.batching.stats import BatchStats, StatsSnapshot

__all__ = ["BatchStats", "BatchingPolicy", "DynamicBatcher", "StatsSnapshot"]
