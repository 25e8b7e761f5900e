"""The stack the infra tests share: synthesized once per session, cdk-nag off (the security
review in test_stack.py runs it with cdk-nag on)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("aws_cdk", reason="the infra extra (aws-cdk-lib) is not installed")
sys.path.insert(0, str(REPO / "infra"))

from aws_cdk.assertions import Template  # noqa: E402

from tests.infra.stack_project import DESTINATION, fake_project  # noqa: E402


@pytest.fixture(scope="session")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="session")
def assembly_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the shared stack is synthesized (the asset manifest and staged assets are there)."""
    return tmp_path_factory.mktemp("cdk.out")


@pytest.fixture(scope="session")
def template(project_root: Path, assembly_dir: Path) -> Template:
    from medfn_infra.app import build_app

    assembly = build_app(assembly_dir, repo=project_root, nag=False).synth()
    [stack] = assembly.stacks
    return Template.from_json(stack.template)


@pytest.fixture(scope="session")
def destination_template(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The stack given a DICOMweb destination for results (DESTINATION), cdk-nag off."""
    from medfn_infra.app import build_app

    assembly = build_app(tmp_path_factory.mktemp("cdk.out"), repo=project_root, nag=False, context=DESTINATION).synth()
    [stack] = assembly.stacks
    return Template.from_json(stack.template)
