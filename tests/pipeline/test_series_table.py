"""The series table's rules, on both backends (SQLite; DynamoDB on moto in server mode over HTTP):
a duplicate instance changes nothing, one claim at a time, a later generation makes the series due
again, and `processed` never goes back."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path
from typing import Any

import boto3
import pytest

from medfn.pipeline.series.dynamo_table import DynamoSeriesTable
from medfn.pipeline.series.sqlite_table import SqliteSeriesTable
from medfn.pipeline.series.table import Member, SeriesKey, SeriesTable
from medfn.pipeline.types import ObjectRef
from tests.conftest import create_series_table

_names = count()
KEY = SeriesKey("ct_nodule_volume", "1.2.3", "1.2.3.4")


@pytest.fixture(params=["sqlite", "dynamodb"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SeriesTable]:
    if request.param == "sqlite":
        local = SqliteSeriesTable(tmp_path / "status.sqlite3")
        yield local
        local.close()
        return
    endpoint = request.getfixturevalue("aws_env")
    client = boto3.client("dynamodb", endpoint_url=endpoint)
    name = f"medfn-series-{next(_names)}"
    create_series_table(client, name)
    yield DynamoSeriesTable(name, client)


def member(n: int, bucket: str = "uploads") -> Member:
    return Member(f"1.2.3.4.{n}", ObjectRef(bucket, f"ct_nodule_volume/a/{n}.dcm", version_id=f"v{n}", etag=f"e{n}"))


def test_instances_count_once_and_keep_their_objects(table: SeriesTable) -> None:
    state, new = table.arrive(KEY, member(1), None, 100.0)
    assert new and state.arrived == 1 and state.processed == 0 and state.last_arrival == 100.0
    state, new = table.arrive(KEY, member(2), 3, 101.5)
    assert new and state.arrived == 2 and state.expected == 3
    state, new = table.arrive(KEY, member(1, bucket="elsewhere"), None, 200.0)  # the same SOP Instance UID again
    assert not new and state.arrived == 2 and state.last_arrival == 101.5  # nothing changed
    members = {m.sop_instance_uid: m for m in table.members(KEY)}
    assert set(members) == {"1.2.3.4.1", "1.2.3.4.2"}
    assert members["1.2.3.4.1"].ref == member(1).ref  # the first upload's object, not the duplicate's
    assert table.state(SeriesKey("ct_nodule_volume", "1.2.3", "other")) is None


def test_a_series_settles_at_once_when_every_announced_instance_is_there(table: SeriesTable) -> None:
    table.arrive(KEY, member(1), 2, 100.0)
    state, _ = table.arrive(KEY, member(2), 2, 105.0)
    assert state.settles_at(30.0) == 105.0
    other = SeriesKey("ct_nodule_volume", "1.2.3", "9")
    state, _ = table.arrive(other, member(1), None, 100.0)
    assert state.settles_at(30.0) == 130.0


def test_one_claim_at_a_time_and_a_later_generation_is_due_again(table: SeriesTable) -> None:
    table.arrive(KEY, member(1), None, 100.0)
    assert table.claim(KEY, 1, now=200.0, lease_s=60.0)
    assert not table.claim(KEY, 1, now=210.0, lease_s=60.0)  # held
    assert table.claim(KEY, 1, now=261.0, lease_s=60.0)  # the lease lapsed: a crashed worker's claim
    table.finish(KEY, 1)
    state = table.state(KEY)
    assert state is not None and state.answered and state.claimed_until == 0
    assert not table.claim(KEY, 1, now=300.0, lease_s=60.0)  # answered already
    state, new = table.arrive(KEY, member(2), None, 400.0)  # a late instance
    assert new and not state.answered and state.arrived == 2
    assert table.claim(KEY, 2, now=500.0, lease_s=60.0)
    table.finish(KEY, 2)
    table.finish(KEY, 1)  # a slow worker of the old generation finishing late: processed stays 2
    state = table.state(KEY)
    assert state is not None and state.processed == 2


def test_release_lets_the_next_check_claim(table: SeriesTable) -> None:
    table.arrive(KEY, member(1), None, 100.0)
    assert table.claim(KEY, 1, now=200.0, lease_s=600.0)
    table.release(KEY)
    assert table.claim(KEY, 1, now=201.0, lease_s=600.0)


def test_an_excluded_instance_says_why(table: SeriesTable) -> None:
    table.arrive(KEY, member(1), None, 100.0)
    table.arrive(KEY, member(2), None, 100.0)
    table.exclude(KEY, "1.2.3.4.2", "pixel data truncated")
    excluded = {m.sop_instance_uid: m.excluded for m in table.members(KEY)}
    assert excluded == {"1.2.3.4.1": "", "1.2.3.4.2": "pixel data truncated"}


def test_concurrent_arrivals_all_count(tmp_path: Path) -> None:
    """Workers adding instances of one series at once: each instance counted exactly once.
    (SQLite here: moto's server does not serialise concurrent transactions as DynamoDB does, so
    DynamoDB's side, a conflict retried and never taken for a duplicate, is the next test's.)"""
    from medfn.errors import StorageUnavailable

    table = SqliteSeriesTable(tmp_path / "status.sqlite3")

    def arrive(n: int) -> bool:
        for _ in range(20):
            try:
                return table.arrive(KEY, member(n), None, 100.0 + n)[1]
            except StorageUnavailable:
                continue
        raise AssertionError("never written")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(arrive, [*range(1, 13), *range(1, 13)]))
    assert sum(results) == 12
    state = table.state(KEY)
    assert state is not None and state.arrived == 12 and len(table.members(KEY)) == 12
    table.close()


def test_a_dynamodb_transaction_conflict_is_retried_never_a_duplicate(aws_env: str) -> None:
    """DynamoDB cancels one of two transactions that touch the series record at once
    (TransactionConflict): retried, and the instance counted; a cancelled condition on the
    instance item is the duplicate; anything else is left for the delivery's retry."""
    from botocore.exceptions import ClientError

    from medfn.errors import StorageUnavailable

    client = boto3.client("dynamodb", endpoint_url=aws_env)
    name = f"medfn-series-{next(_names)}"
    create_series_table(client, name)

    def cancelled(*codes: str) -> ClientError:
        response: Any = {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": code} for code in codes],
        }
        return ClientError(response, "TransactWriteItems")

    class Conflicting:
        """The real client, whose first transactions are cancelled as DynamoDB cancels them."""

        def __init__(self, *failures: ClientError) -> None:
            self.failures = list(failures)

        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        def transact_write_items(self, **kwargs: Any) -> Any:
            if self.failures:
                raise self.failures.pop(0)
            return client.transact_write_items(**kwargs)

    table = DynamoSeriesTable(name, Conflicting(cancelled("None", "TransactionConflict")))
    state, new = table.arrive(KEY, member(1), None, 100.0)
    assert new and state.arrived == 1
    table = DynamoSeriesTable(name, Conflicting(cancelled("ConditionalCheckFailed", "None")))
    assert table.arrive(KEY, member(2), None, 100.0) == (state, False)
    table = DynamoSeriesTable(name, Conflicting(cancelled("None", "ThrottlingError")))
    with pytest.raises(StorageUnavailable):
        table.arrive(KEY, member(3), None, 100.0)


def test_due_lists_settled_unanswered_unclaimed_series(tmp_path: Path) -> None:
    table = SqliteSeriesTable(tmp_path / "s.sqlite3")
    table.arrive(KEY, member(1), None, 100.0)
    other = SeriesKey("ct_nodule_volume", "1.2.3", "9")
    table.arrive(other, member(1), None, 120.0)
    assert table.due(125.0, 10.0) == [KEY]
    assert sorted(k.series_instance_uid for k in table.due(131.0, 10.0)) == ["1.2.3.4", "9"]
    table.claim(KEY, 1, now=131.0, lease_s=60.0)
    assert table.due(132.0, 10.0) == [other]
    table.close()
