"""Prices used for cost estimates: one place, with where and when they were read.

AWS Lambda and API Gateway list prices, US East (N. Virginia), first pricing tier, as
published on aws.amazon.com/lambda/pricing and aws.amazon.com/api-gateway/pricing; read
on 2026-11-22 from stored copies of those pages and pricing write-ups (the Lambda rates
have not changed since arm64 launched in 2021). Other regions and volume tiers differ:
treat results as estimates and re-read the pages before quoting a customer.
"""

from __future__ import annotations

PRICES_READ = "read 2026-11-22, us-east-1, first tier"
LAMBDA_ARM64_PER_GB_SECOND = 0.0000133334
LAMBDA_X86_64_PER_GB_SECOND = 0.0000166667
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
API_GATEWAY_REST_PER_REQUEST = 3.50 / 1_000_000  # REST APIs, first 333 million a month
# Lambda SnapStart (Python): snapshot cache while a version is published, and each restore.
SNAPSTART_CACHE_PER_GB_SECOND = 0.0000015046
SNAPSTART_RESTORE_PER_GB = 0.0001397998


def lambda_cost(duration_ms: float, memory_mb: int, requests: int = 1, per_gb_second: float = LAMBDA_ARM64_PER_GB_SECOND) -> float:
    """Lambda's charge: duration billed per started millisecond × memory, plus the requests."""
    billed_seconds = -(-duration_ms // 1) / 1000  # Lambda rounds each call up to the next ms
    return billed_seconds * (memory_mb / 1024) * per_gb_second + requests * LAMBDA_PER_REQUEST
