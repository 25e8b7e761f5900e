"""The DICOMweb destination's credentials: from the environment locally, from Secrets Manager in AWS.

    MEDFN_DICOMWEB_USER + MEDFN_DICOMWEB_PASSWORD   HTTP basic authentication
    MEDFN_DICOMWEB_TOKEN                            a bearer token
    MEDFN_DICOMWEB_SECRET                           the ARN of a secret whose string is JSON:
                                                    {"username": ..., "password": ...} or {"token": ...}

The secret is read at the first delivery, not at start-up (boto3 loads then), and kept for the
life of the process. Neither a credential nor the secret's text ever reaches a message or a log.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medfn.errors import BadRequest, StorageUnavailable


@dataclass(frozen=True)
class Credentials:
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    def basic(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None


class CredentialSource:
    """Where credentials come from; `get()` gives them (None: send none)."""

    def __init__(self, env: Mapping[str, str], client: Any = None) -> None:
        self.secret_arn = env.get("MEDFN_DICOMWEB_SECRET", "")
        self._fixed = _from_mapping(
            {
                "username": env.get("MEDFN_DICOMWEB_USER", ""),
                "password": env.get("MEDFN_DICOMWEB_PASSWORD", ""),
                "token": env.get("MEDFN_DICOMWEB_TOKEN", ""),
            },
            "MEDFN_DICOMWEB_USER/PASSWORD/TOKEN",
        )
        if self.secret_arn and self._fixed is not None:
            raise BadRequest("set MEDFN_DICOMWEB_SECRET or the MEDFN_DICOMWEB_USER/PASSWORD/TOKEN variables, not both")
        self._client = client
        self._cached: Credentials | None = None
        self._lock = threading.Lock()

    def get(self) -> Credentials | None:
        if not self.secret_arn:
            return self._fixed
        with self._lock:
            if self._cached is None:
                self._cached = self._read_secret()
            return self._cached

    def _read_secret(self) -> Credentials:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._client is None:
            import boto3

            self._client = boto3.client("secretsmanager")
        try:
            text = self._client.get_secret_value(SecretId=self.secret_arn).get("SecretString", "")
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable("Secrets Manager did not give the DICOMweb destination's secret") from exc
        try:
            values = json.loads(text)
        except ValueError:
            values = None
        try:
            found = _from_mapping(values, "the secret") if isinstance(values, dict) else None
        except BadRequest:
            found = None
        if found is None:
            # a configuration to fix, after which a redelivery succeeds: retryable, never poison
            raise StorageUnavailable(
                'the DICOMweb destination\'s secret is not JSON {"username", "password"} or {"token"}'
            )
        return found


def _from_mapping(values: Mapping[str, Any], where: str) -> Credentials | None:
    username, password, token = (str(values.get(key) or "") for key in ("username", "password", "token"))
    if token and (username or password):
        raise BadRequest(f"{where}: give a token or a username and password, not both")
    if bool(username) != bool(password):
        raise BadRequest(f"{where}: a username needs its password, and a password its username")
    if not (token or username):
        return None
    return Credentials(username=username, password=password, token=token)
