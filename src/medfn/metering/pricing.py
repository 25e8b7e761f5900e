"""Prices used for cost estimates: one place, with where and when they were read.

AWS Lambda list prices, US East (N. Virginia), first pricing tier, as
published on aws.amazon.com/lambda/pricing; read
on 2026-11-22 from stored copies of those pages and pricing write-ups (the Lambda rates
have not changed since arm64 launched in 2021). Other regions and volume tiers differ:
treat results as estimates and re-read the pages before quoting a customer.
"""

from __future__ import annotations

PRICES_READ = "read 2026-11-22, us-east-1, first tier"
LAMBDA_ARM64_PER_GB_SECOND = 0.0000133334
LAMBDA_PER_REQUEST = 0.20 / 1_000_000


def lambda_cost(
    duration_ms: float, memory_mb: int, requests: int = 1, per_gb_second: float = LAMBDA_ARM64_PER_GB_SECOND
) -> float:
    """Lambda's charge: duration billed per started millisecond × memory, plus the requests."""
    billed_seconds = -(-duration_ms // 1) / 1000  # Lambda rounds each call up to the next ms
    return billed_seconds * (memory_mb / 1024) * per_gb_second + requests * LAMBDA_PER_REQUEST


# SageMaker Serverless Inference, on demand, us-east-1, for comparison only (medfn does not use
# it). AWS prices it per second of compute by the endpoint's memory size, $0.0000200 a second at
# 1024 MB and in proportion up to 6144 MB ($0.00002 per GB-second), billed per millisecond of
# each request, plus $0.016 per GB of data processed in and out. Read 2026-11-22: the memory
# sizes (1-6 GB in 1 GB steps) and the billing model (memory x request duration, plus data
# processed) from AWS's CloudFormation ServerlessConfig reference and SageMaker developer guide;
# the per-second figures from aws.amazon.com/sagemaker/pricing as remembered, since the stored
# copies searched did not show that table: re-read that page before quoting a customer.
SAGEMAKER_PRICES_READ = (
    "Serverless Inference billing model read 2026-11-22; its us-east-1 per-second rate remembered, not read"
)
SAGEMAKER_SERVERLESS_PER_GB_SECOND = 0.0000200
SAGEMAKER_SERVERLESS_PER_GB_PROCESSED = 0.016
SAGEMAKER_SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)


def sagemaker_serverless_cost(duration_ms: float, memory_mb: int, bytes_in: int = 0, bytes_out: int = 0) -> float:
    """One call on a SageMaker serverless endpoint of the smallest size holding `memory_mb`."""
    size = next((m for m in SAGEMAKER_SERVERLESS_MEMORY_MB if m >= memory_mb), None)
    if size is None:
        raise ValueError(f"SageMaker Serverless Inference offers at most 6144 MB, not {memory_mb}")
    billed_seconds = -(-duration_ms // 1) / 1000
    data_gb = (bytes_in + bytes_out) / 1024**3
    return (
        billed_seconds * (size / 1024) * SAGEMAKER_SERVERLESS_PER_GB_SECOND
        + data_gb * SAGEMAKER_SERVERLESS_PER_GB_PROCESSED
    )
