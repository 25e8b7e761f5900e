"""The deployment's choices, read once at synth: CDK context `medfn:<name>`, else `MEDFN_<NAME>`.

`medfn synth` builds the app in process, so the environment is the usual way to set them
(`MEDFN_WAF=0 medfn synth`); `npx cdk synth -c medfn:waf=false` works for the bare CDK app.
Defaults are the secure ones; docs/deploy.md ("Security") says what each costs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from constructs import Node

AUTH_MODES = ("iam", "cognito", "api_key")
# A secret's complete ARN (with the 6 characters Secrets Manager appends to the name): the role
# is granted exactly this resource, so a partial ARN or a name would match nothing.
SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}")
KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")


@dataclass(frozen=True)
class Settings:
    auth: str = "iam"  # iam: SigV4 + API key; cognito: a user-pool authorizer + API key; api_key: keys only
    user_pool_arn: str = ""  # the Cognito user pool whose tokens the API accepts (auth = cognito)
    waf: bool = True  # a WAFv2 web ACL with rate-based rules on the stage
    waf_rate_limit: int = 0  # requests per IP per 5 minutes; 0: the top tier's rate for 5 minutes
    stage_rate_limit: int = 0  # the stage's steady requests a second; 0: the top tier's
    stage_burst_limit: int = 0  # 0: the top tier's burst
    alarm_email: str = ""  # subscribed to the alarm topic when given
    results_retention_days: int = 0  # results expire after this many days; 0: kept until deleted
    # The GPU service's (gpu_service.REQUIRED_SETTINGS): needed, and only needed, when a function
    # has accelerator = "gpu"; without them such a project is refused at synth
    gpu_certificate_arn: str = ""  # an ACM certificate for the NLB's TLS listeners
    gpu_domain: str = ""  # the name that certificate is for (the integrations' host)
    gpu_s3_prefix_list: str = ""  # S3's managed prefix list (pl-...): GPU hosts and tasks reach S3 alone
    gpu_dynamodb_prefix_list: str = ""  # DynamoDB's (pl-...): GPU scan workers reach their tables alone
    snapstart: bool = True
    # Results out (docs/pacs.md): every upload function stores its DICOM results (SR, SEG) into
    # this PACS by STOW-RS; none by default
    dicomweb_url: str = ""  # the PACS's DICOMweb root, https:// only
    dicomweb_secret_arn: str = ""  # a secret the customer made: {"username", "password"} or {"token"}
    dicomweb_secret_key_arn: str = ""  # the customer managed KMS key of that secret, if not aws/secretsmanager

    def __post_init__(self) -> None:
        if self.auth not in AUTH_MODES:
            raise ValueError(f"MEDFN_AUTH must be one of {AUTH_MODES}, not {self.auth!r}")
        if self.auth == "cognito" and not self.user_pool_arn:
            raise ValueError("MEDFN_AUTH=cognito needs MEDFN_USER_POOL_ARN, the user pool whose tokens to accept")
        if bool(self.gpu_certificate_arn) != bool(self.gpu_domain):
            raise ValueError("MEDFN_GPU_CERTIFICATE_ARN and MEDFN_GPU_DOMAIN go together (TLS to the GPU services)")
        self._check_dicomweb()

    def _check_dicomweb(self) -> None:
        url, secret, key = self.dicomweb_url, self.dicomweb_secret_arn, self.dicomweb_secret_key_arn
        if url:
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname:
                raise ValueError("MEDFN_DICOMWEB_URL must be an https:// URL: results concern a patient")
            if parts.username or parts.password:
                raise ValueError(
                    "MEDFN_DICOMWEB_URL must hold no credentials: name a secret (MEDFN_DICOMWEB_SECRET_ARN)"
                )
        if secret and not url:
            raise ValueError("MEDFN_DICOMWEB_SECRET_ARN needs MEDFN_DICOMWEB_URL, the PACS it authenticates to")
        if secret and not SECRET_ARN.fullmatch(secret):
            raise ValueError("MEDFN_DICOMWEB_SECRET_ARN must be a secret's complete ARN (arn:...:secret:<name>-XXXXXX)")
        if key and not secret:
            raise ValueError(
                "MEDFN_DICOMWEB_SECRET_KEY_ARN is the key of a secret: name it (MEDFN_DICOMWEB_SECRET_ARN)"
            )
        if key and not KEY_ARN.fullmatch(key):
            raise ValueError(
                "MEDFN_DICOMWEB_SECRET_KEY_ARN must be a KMS key's ARN (arn:...:kms:<region>:<acct>:key/<id>)"
            )

    @classmethod
    def load(cls, node: Node, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def value(name: str) -> str | None:
            found = node.try_get_context(f"medfn:{name}")
            if found is None:
                found = env.get(f"MEDFN_{name.upper()}")
            return None if found is None else str(found).strip()

        def text(name: str) -> str:
            return value(name) or ""

        def number(name: str) -> int:
            return int(value(name) or 0)

        def switch(name: str, default: bool) -> bool:
            found = value(name)
            return default if found in (None, "") else found.lower() not in ("0", "false", "off", "no")

        return cls(
            auth=text("auth") or "iam",
            user_pool_arn=text("user_pool_arn"),
            waf=switch("waf", True),
            waf_rate_limit=number("waf_rate_limit"),
            stage_rate_limit=number("stage_rate_limit"),
            stage_burst_limit=number("stage_burst_limit"),
            alarm_email=text("alarm_email"),
            results_retention_days=number("results_retention_days"),
            gpu_certificate_arn=text("gpu_certificate_arn"),
            gpu_domain=text("gpu_domain"),
            gpu_s3_prefix_list=text("gpu_s3_prefix_list"),
            gpu_dynamodb_prefix_list=text("gpu_dynamodb_prefix_list"),
            snapstart=switch("snapstart", True),
            dicomweb_url=text("dicomweb_url"),
            dicomweb_secret_arn=text("dicomweb_secret_arn"),
            dicomweb_secret_key_arn=text("dicomweb_secret_key_arn"),
        )
