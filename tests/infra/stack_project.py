"""The project the stack tests synthesize: a copy of the repository's functions and models,
two more function folders (a zip function, and a container function that assembles DICOM
series), and stand-in zips; and helpers to find things in its template."""

from __future__ import annotations

import os
import shutil
import tomllib
import zipfile
from pathlib import Path

from aws_cdk.assertions import Template

from tests.conftest import REPO

EXTRA = "toy_tensor"  # a function folder that exists only in this test's project
SERIES = "toy_series"  # a container function with [series]: uploads assembled into series, no HTTP routes
SERIES_TOML = f"""model = "{SERIES}"
runtime = "container"
architecture = "x86_64"
memory_mb = 2048
timeout_s = 90

[triggers]
http = false
uploads = true

[series]
settle_s = 45
"""


# Results out to a PACS (docs/pacs.md): the customer's secret and its key, as a stack is given them
# (MEDFN_DICOMWEB_*); the stack refuses a secret of another region than its own.
SECRET_REGION = os.environ.get("CDK_DEFAULT_REGION") or "us-east-1"
SECRET = f"arn:aws:secretsmanager:{SECRET_REGION}:111122223333:secret:medfn/pacs-AbC123"
OTHER_SECRET = f"arn:aws:secretsmanager:{SECRET_REGION}:111122223333:secret:medfn/other-XyZ789"
SECRET_KEY = f"arn:aws:kms:{SECRET_REGION}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DESTINATION = {
    "medfn:dicomweb_url": "https://pacs.example.org/dicom-web",
    "medfn:dicomweb_secret_arn": SECRET,
    "medfn:dicomweb_secret_key_arn": SECRET_KEY,
}


def fake_project(root: Path) -> Path:
    shutil.copytree(REPO / "functions", root / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    toy = root / "functions" / EXTRA
    toy.mkdir()
    (toy / "function.toml").write_text(f'model = "{EXTRA}"\narchitecture = "x86_64"\nmemory_mb = 256\ntimeout_s = 12\n')
    (toy / "handler.py").write_text("from medfn.lambda_handler import make_handler\nhandler = make_handler(__file__)\n")
    series = root / "functions" / SERIES
    series.mkdir()
    (series / "function.toml").write_text(SERIES_TOML)
    (series / "handler.py").write_text((toy / "handler.py").read_text())
    # a container function's image asset names containers/lambda.Dockerfile (synthesized, never built)
    shutil.copytree(REPO / "containers", root / "containers", ignore=shutil.ignore_patterns("__pycache__"))
    for toml in sorted((root / "functions").glob("*/function.toml")):  # what the app discovers
        function, config = toml.parent, tomllib.loads(toml.read_text())
        model, source = config["model"], REPO / "model_store" / config["model"]
        if (source / "model.toml").is_file():
            shutil.copytree(source, root / "model_store" / model)
        else:  # a model still being trained elsewhere: a stand-in with the same layout
            (root / "model_store" / model / "1").mkdir(parents=True)
            (root / "model_store" / model / "1" / "model.onnx").write_bytes(b"onnx")
            (root / "model_store" / model / "model.toml").write_text(
                f'name = "{model}"\ntask = "tensor"\n[versions.1.sha256]\n"model.onnx" = "{"ab" * 32}"\n'
            )
        (root / "dist").mkdir(exist_ok=True)
        with zipfile.ZipFile(
            root / "dist" / f"{function.name}-{config.get('architecture', 'arm64')}.zip", "w"
        ) as archive:
            archive.writestr("handler.py", "handler = None\n")
    return root


def function_configs(root: Path) -> dict[str, dict]:
    return {p.parent.name: tomllib.loads(p.read_text()) for p in (root / "functions").glob("*/function.toml")}


def lambdas(template: Template) -> dict[str, dict]:
    """Functions of ours (python3.12 zips and container images; not CDK's helpers) by logical id
    (`ScanClassifierFunction...`), properties only."""
    found = template.find_resources("AWS::Lambda::Function", {"Properties": {"Runtime": "python3.12"}})
    found.update(template.find_resources("AWS::Lambda::Function", {"Properties": {"PackageType": "Image"}}))
    return {k: v["Properties"] for k, v in found.items()}


def is_container(props: dict) -> bool:
    return props.get("PackageType") == "Image"


def logical_prefix(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Function"


def function_id(template: Template, name: str) -> str:
    """The logical id of a function's AWS::Lambda::Function (`ScanClassifierFunctionF0A2A029`)."""
    prefix = logical_prefix(name)
    [found] = [k for k in lambdas(template) if k.startswith(prefix) and not k.startswith(prefix + "Role")]
    return found


def function_of(template: Template, name: str) -> dict:
    return lambdas(template)[function_id(template, name)]
