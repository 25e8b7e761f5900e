"""The series table in DynamoDB: the AWS backend, one item per series and one per instance.

Key: `series` (partition, SeriesKey.id, which starts with the function's name: the function's
role may touch only its own, by a dynamodb:LeadingKeys condition) and `item` (sort: "series", or
"instance#<SOP Instance UID>"). An instance and its count are written in one transaction, so a
delivery that dies between them cannot leave an instance that is never counted.
"""

from __future__ import annotations

import random
import time
from typing import Any

from medfn.errors import StorageUnavailable
from medfn.pipeline.series.table import Member, SeriesKey, SeriesState
from medfn.pipeline.types import ObjectRef

_SERIES = "series"
_INSTANCE = "instance#"
_REF_FIELDS = ("bucket", "key", "version_id", "etag", "size", "scheme")
_DAY_S = 24 * 3600
_CONFLICT_ATTEMPTS = 5


class DynamoSeriesTable:
    def __init__(self, table_name: str, client: Any = None, retention_days: float = 30.0) -> None:
        if not table_name:
            raise ValueError("set MEDFN_SERIES_TABLE to the DynamoDB table of series")
        self.table_name = table_name
        self._client = client
        # DynamoDB's TTL removes a series' items this long after its last arrival (the stack's
        # MEDFN_SERIES_RETENTION_DAYS); its status record and results stay by their own policy.
        self.retention_s = retention_days * _DAY_S

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # the upload path only

            self._client = boto3.client("dynamodb")
        return self._client

    def arrive(self, key: SeriesKey, member: Member, expected: int | None, now: float) -> tuple[SeriesState, bool]:
        ref = {name: getattr(member.ref, name) for name in _REF_FIELDS if getattr(member.ref, name) is not None}
        expires = {"N": str(int(now + self.retention_s))}
        update = "ADD arrived :one SET last_arrival = :now, expires_at = :expires"
        values: dict[str, Any] = {":one": {"N": "1"}, ":now": {"N": repr(now)}, ":expires": expires}
        if expected is not None:
            update += ", expected = if_not_exists(expected, :expected)"
            values[":expected"] = {"N": str(expected)}
        instance = {
            **_key(key, _INSTANCE + member.sop_instance_uid),
            "ref": {"M": {name: _attribute(value) for name, value in ref.items()}},
            "expires_at": expires,
        }
        new = self._write_arrival(
            [
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": instance,
                        "ConditionExpression": "attribute_not_exists(#item)",
                        "ExpressionAttributeNames": {"#item": "item"},
                    }
                },
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": _key(key, _SERIES),
                        "UpdateExpression": update,
                        "ExpressionAttributeValues": values,
                    }
                },
            ]
        )
        state = self.state(key)
        if state is None:
            raise StorageUnavailable("the series record is missing after its instance was written")
        return state, new

    def _write_arrival(self, transaction: list[dict[str, Any]]) -> bool:
        """True: written; False: the instance was there already (a duplicate, or a redelivery).
        Arrivals of one series all update its record, so concurrent ones conflict: retried here a
        few times with jitter (AWS's advice) before the delivery itself is left to be retried."""
        from botocore.exceptions import ClientError

        for attempt in range(_CONFLICT_ATTEMPTS):
            try:
                self._call("transact_write_items", TransactItems=transaction)
                return True
            except ClientError as exc:
                reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return False
                if "TransactionConflict" not in reasons or attempt + 1 == _CONFLICT_ATTEMPTS:
                    raise StorageUnavailable("DynamoDB transact_write_items on the series table failed") from exc
                time.sleep(random.uniform(0.02, 0.1) * 2**attempt)
        raise StorageUnavailable("DynamoDB transact_write_items on the series table kept conflicting")

    def state(self, key: SeriesKey) -> SeriesState | None:
        item = self._call("get_item", Key=_key(key, _SERIES), ConsistentRead=True).get("Item")
        if not item:
            return None
        return SeriesState(
            key,
            arrived=int(item["arrived"]["N"]),
            last_arrival=float(item["last_arrival"]["N"]),
            expected=int(item["expected"]["N"]) if "expected" in item else None,
            processed=int(item.get("processed", {}).get("N", 0)),
            claimed_until=float(item.get("claimed_until", {}).get("N", 0)),
        )

    def members(self, key: SeriesKey) -> list[Member]:
        members: list[Member] = []
        start: dict[str, Any] = {}
        while True:
            page = self._call(
                "query",
                KeyConditionExpression="#series = :series AND begins_with(#item, :instance)",
                ExpressionAttributeNames={"#series": "series", "#item": "item"},
                ExpressionAttributeValues={":series": {"S": key.id}, ":instance": {"S": _INSTANCE}},
                ConsistentRead=True,
                **start,
            )
            for item in page.get("Items", []):
                ref: dict[str, Any] = {name: _value(value) for name, value in item["ref"]["M"].items()}
                sop = item["item"]["S"].removeprefix(_INSTANCE)
                members.append(Member(sop, ObjectRef(**ref), item.get("excluded", {}).get("S", "")))
            if "LastEvaluatedKey" not in page:
                return members
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

    def claim(self, key: SeriesKey, generation: int, now: float, lease_s: float) -> bool:
        return self._conditional(
            key,
            "SET claimed_until = :until",
            "(attribute_not_exists(#processed) OR #processed < :generation)"
            " AND (attribute_not_exists(claimed_until) OR claimed_until < :now)",
            {
                ":until": {"N": repr(now + lease_s)},
                ":generation": {"N": str(generation)},
                ":now": {"N": repr(now)},
            },
        )

    def finish(self, key: SeriesKey, generation: int) -> None:
        done = self._conditional(
            key,
            "SET #processed = :generation REMOVE claimed_until",
            "attribute_not_exists(#processed) OR #processed < :generation",
            {":generation": {"N": str(generation)}},
        )
        if not done:  # a later generation is answered already: keep its number, drop our claim
            self.release(key)

    def release(self, key: SeriesKey, until: float = 0.0) -> None:
        if until:
            self._call(
                "update_item",
                Key=_key(key, _SERIES),
                UpdateExpression="SET claimed_until = :until",
                ExpressionAttributeValues={":until": {"N": repr(until)}},
            )
        else:
            self._call("update_item", Key=_key(key, _SERIES), UpdateExpression="REMOVE claimed_until")

    def exclude(self, key: SeriesKey, sop_instance_uid: str, reason: str) -> None:
        self._call(
            "update_item",
            Key=_key(key, _INSTANCE + sop_instance_uid),
            UpdateExpression="SET excluded = :reason",
            ConditionExpression="attribute_exists(#item)",
            ExpressionAttributeNames={"#item": "item"},
            ExpressionAttributeValues={":reason": {"S": reason}},
        )

    def _conditional(self, key: SeriesKey, update: str, condition: str, values: dict[str, Any]) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=_key(key, _SERIES),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#processed": "processed"},  # a DynamoDB reserved word
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise StorageUnavailable("DynamoDB update_item on the series table failed") from exc
        return True

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        if operation != "transact_write_items":
            kwargs["TableName"] = self.table_name
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            if operation == "transact_write_items":
                raise  # arrive() tells a duplicate (a cancelled transaction) from a failure
            raise StorageUnavailable(f"DynamoDB {operation} on the series table failed") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"DynamoDB {operation} on the series table failed") from exc
        return response


def _key(key: SeriesKey, item: str) -> dict[str, Any]:
    return {"series": {"S": key.id}, "item": {"S": item}}


def _attribute(value: str | int) -> dict[str, str]:
    return {"N": str(value)} if isinstance(value, int) else {"S": str(value)}


def _value(attribute: dict[str, str]) -> str | int:
    return int(attribute["N"]) if "N" in attribute else attribute["S"]
