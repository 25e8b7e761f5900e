"""Status records in DynamoDB: the AWS backend, idempotent through conditional writes.

The table's key is `object_uri` (partition, "s3://bucket/key") and `object_version` (sort,
"version:<id>" or "etag:<etag>"): two uploads under one key are two records.
"""

from __future__ import annotations

from typing import Any

from medfn.errors import StorageUnavailable
from medfn.pipeline.types import ObjectRef, Outcome, Settled, StatusRecord

_OPEN = "attribute_not_exists(outcome) OR retryable = :yes"  # items a new record may still settle
# A series' record is replaced by one of a later generation (an instance arrived after it was answered)
_SUPERSEDED = f"{_OPEN} OR generation < :generation"


class DynamoStatusTable:
    def __init__(self, table_name: str, client: Any = None) -> None:
        if not table_name:
            raise ValueError("set MEDFN_STATUS_TABLE to the DynamoDB table of status records")
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # the upload path only: HTTP functions never pay for it

            self._client = boto3.client("dynamodb")
        return self._client

    def settled(self, ref: ObjectRef) -> Settled | None:
        item = (self._call("get_item", Key=_key(ref), ConsistentRead=True) or {}).get("Item", {})
        if "outcome" not in item or item.get("retryable", {}).get("BOOL", False):
            return None
        outcome: Outcome = item["outcome"]["S"]
        return Settled(outcome, item.get("location", {}).get("S", ""))

    def record(self, record: StatusRecord) -> bool:
        from boto3.dynamodb.types import TypeSerializer

        serialise = TypeSerializer().serialize
        item = {**_key(record.ref), **{name: serialise(value) for name, value in record.as_item().items()}}
        values = {":yes": {"BOOL": True}, ":generation": {"N": str(record.generation or 0)}}
        written = self._call("put_item", Item=item, ConditionExpression=_SUPERSEDED, ExpressionAttributeValues=values)
        return written is not None

    def used_before(self, ref: ObjectRef) -> bool:
        response = self._call(
            "query",
            KeyConditionExpression="object_uri = :uri",
            ExpressionAttributeValues={":uri": {"S": ref.uri}},
            ProjectionExpression="object_version",
            ConsistentRead=True,
        )
        items = (response or {}).get("Items", [])
        return any(item["object_version"]["S"] != ref.identity for item in items)

    def count_failure(self, ref: ObjectRef) -> int | None:
        response = self._call(
            "update_item",
            Key=_key(ref),
            UpdateExpression="ADD failures :one",
            ConditionExpression=_OPEN,
            ExpressionAttributeValues={":one": {"N": "1"}, ":yes": {"BOOL": True}},
            ReturnValues="UPDATED_NEW",
        )
        return None if response is None else int(response["Attributes"]["failures"]["N"])

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """The response; None where a condition failed (the object is settled)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response: dict[str, Any] = getattr(self.client, operation)(TableName=self.table_name, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise StorageUnavailable(f"DynamoDB {operation} on the status table failed") from exc
        except BotoCoreError as exc:  # no connection, timeouts, throttled past botocore's retries
            raise StorageUnavailable(f"DynamoDB {operation} on the status table failed") from exc
        return response


def _key(ref: ObjectRef) -> dict[str, Any]:
    return {"object_uri": {"S": ref.uri}, "object_version": {"S": ref.identity}}
