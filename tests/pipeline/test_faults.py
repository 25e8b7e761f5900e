"""The fault-injecting S3 proxy (tests/pipeline/flaky_s3.py) does what the pipeline tests rely on."""

from __future__ import annotations

import boto3
import pytest

from tests.pipeline.flaky_s3 import FlakyS3


def test_proxy_forwards_and_fails_on_demand(aws_env: str, flaky_s3: FlakyS3) -> None:
    from botocore.config import Config
    from botocore.exceptions import ClientError

    s3 = boto3.client(
        "s3", endpoint_url=flaky_s3.url, config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
    )
    s3.create_bucket(Bucket="medfn-proxy-check")
    s3.put_object(Bucket="medfn-proxy-check", Key="a b+c.png", Body=b"x")
    flaky_s3.fail("a b+c.png", times=1)
    with pytest.raises(ClientError, match="SlowDown"):
        s3.get_object(Bucket="medfn-proxy-check", Key="a b+c.png")
    assert s3.get_object(Bucket="medfn-proxy-check", Key="a b+c.png")["Body"].read() == b"x"


@pytest.mark.parametrize(
    ("answer", "error"), [("503", "SlowDown"), ("500", "InternalError"), ("drop", "Connection was closed")]
)
def test_proxy_outage_fails_every_request_until_it_ends(
    aws_env: str, flaky_s3: FlakyS3, answer: str, error: str
) -> None:
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client(
        "s3", endpoint_url=flaky_s3.url, config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
    )
    s3.create_bucket(Bucket="medfn-outage-check")
    s3.put_object(Bucket="medfn-outage-check", Key="k", Body=b"x")
    flaky_s3.go_down(answer, writes_only=True)
    assert s3.get_object(Bucket="medfn-outage-check", Key="k")["Body"].read() == b"x"  # reads still work
    with pytest.raises((ClientError, BotoCoreError), match=error):
        s3.put_object(Bucket="medfn-outage-check", Key="k", Body=b"y")
    flaky_s3.go_down(answer)
    with pytest.raises((ClientError, BotoCoreError), match=error):
        s3.get_object(Bucket="medfn-outage-check", Key="k")
    flaky_s3.come_back()
    assert s3.get_object(Bucket="medfn-outage-check", Key="k")["Body"].read() == b"x"
