"""The peer servers' virtual environments: one each under .medfn/peers/, made on first use.

Each peer gets its own interpreter so its pins (pydantic, protobuf, uvicorn, ...) never meet
medfn's. Versions are pinned to what installed from PyPI on 2026-11-22; a peer that will not
install is reported and skipped by the caller, never faked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = REPO / ".medfn" / "peers"
# Both peers run the ONNX file with the same onnxruntime medfn uses, so only the server differs.
PINS = {
    "kserve": ["kserve==0.21.0", "onnxruntime==1.32.0", "numpy==2.4.6"],
    "bentoml": ["bentoml==1.4.39", "onnxruntime==1.32.0", "numpy==2.4.6"],
}


def python_of(peer: str) -> Path:
    return PEERS_DIR / peer / "bin" / "python"


def ensure(peer: str) -> tuple[Path | None, str]:
    """(the peer venv's python, "") when it imports; (None, why) when it could not be installed."""
    python = python_of(peer)
    if python.exists() and _imports(python, peer):
        return python, ""
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    log = PEERS_DIR / f"{peer}-install.log"
    print(f"installing {peer} into {python.parent.parent} (once; log: {log})", file=sys.stderr)
    with log.open("w") as out:
        made = subprocess.run([sys.executable, "-m", "venv", str(python.parent.parent)], stdout=out, stderr=out)
        if made.returncode == 0:
            made = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PINS[peer]], stdout=out, stderr=out)
    if made.returncode != 0 or not _imports(python, peer):
        return None, f"{peer} could not be installed ({' '.join(PINS[peer])}): see {log}"
    return python, ""


def _imports(python: Path, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0


def version(python: Path, distribution: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    found = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return found.stdout.strip() or "?"
