"""What the stack is made of, read from the repository: functions, their models, their zips."""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from medfn.config import FunctionConfig, ModelConfig, discover_functions
from medfn.metering.tiers import Tier, load_tiers

INFRA = Path(__file__).resolve().parent.parent
REPO = INFRA.parent


@dataclass(frozen=True)
class DeployedFunction:
    config: FunctionConfig
    model: ModelConfig
    version: int  # the version the function serves (its policy's latest)
    package: Path  # the zip from `medfn package`, or the folder holding a Dockerfile

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def gpu(self) -> bool:
        """Served by the GPU service (containers/gpu.Dockerfile on ECS), not by Lambda."""
        return self.config.accelerator == "gpu"

    @property
    def sha256(self) -> str:
        """The served version's model.onnx digest, pinned into the function's environment."""
        return self.model.sha256.get(self.version, {}).get("model.onnx", "")


@dataclass(frozen=True)
class Project:
    functions: list[DeployedFunction]
    model_store: Path
    tiers: dict[str, Tier]
    platform_code: Path  # the uploads-and-catalog function's folder

    @property
    def lambda_functions(self) -> list[DeployedFunction]:
        return [f for f in self.functions if not f.gpu]

    @property
    def gpu_functions(self) -> list[DeployedFunction]:
        return [f for f in self.functions if f.gpu]

    @property
    def upload_functions(self) -> list[DeployedFunction]:
        return [f for f in self.functions if f.config.uploads]

    @property
    def http_functions(self) -> list[DeployedFunction]:
        return [f for f in self.functions if f.config.http]


def load_project(
    functions_dir: Path = REPO / "functions",
    model_store: Path = REPO / "model_store",
    dist: Path = REPO / "dist",
    tiers_file: Path = INFRA / "tiers.toml",
    staging: Path = REPO / ".medfn" / "platform",
) -> Project:
    deployed = []
    for config in discover_functions(functions_dir):
        if config.series is not None and not config.uploads:
            # a series is assembled from uploaded instances, and its stability check rides on the upload queue
            raise ValueError(f"function {config.name}: [series] needs uploads = true (under [triggers])")
        toml = model_store / config.model / "model.toml"
        if not toml.is_file():
            raise FileNotFoundError(f"function {config.name}: {toml} is missing")
        model = ModelConfig.parse(tomllib.loads(toml.read_text("utf-8")))
        versions = sorted(int(p.name) for p in toml.parent.iterdir() if p.is_dir() and p.name.isdigit())
        served = model.version_policy.select(versions)
        if not served:
            raise FileNotFoundError(f"model {model.name} has no version folder to serve")
        assert config.directory is not None
        if config.runtime == "container" or config.accelerator == "gpu":
            package = config.directory
        else:
            package = dist / f"{config.name}-{config.architecture}.zip"
            if not package.is_file():
                raise FileNotFoundError(f"{package} is missing: run `medfn package {config.name}` (or `medfn synth`)")
        deployed.append(DeployedFunction(config, model, served[-1], package))
    if not deployed:
        raise FileNotFoundError(f"no functions/*/function.toml under {functions_dir}")
    return Project(deployed, model_store, load_tiers(tiers_file), stage_platform(staging))


def stage_platform(staging: Path) -> Path:
    """The platform function's code: its handler and the medfn package (stdlib and boto3 only)."""
    import medfn

    if staging.exists():
        shutil.rmtree(staging)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(INFRA / "platform", staging, ignore=ignore)
    shutil.copytree(Path(medfn.__file__).parent, staging / "medfn", ignore=ignore)
    return staging
