"""The serving core: a model's lifecycle, the plane every transport calls, and what they run on.

    model.py      Model: load (sha256-verified) -> preprocess -> run -> postprocess, as KServe's;
                  Prediction, and Explanation (what `Model.explain` answers: medfn.explain)
    plane.py      InferencePlane: the served models, and the one way to call them
    runners.py    where a call runs: inline (Lambda) or a cost-aware thread pool (servers)
    batching/     dynamic batching for servers, as Triton's
    store.py      model stores (a local folder, S3) and the sha256 check of every artifact
    sessions.py   ONNX Runtime sessions: providers, threads, one-thread sessions for overlaps

onnxruntime loads with the first model (sessions.py), not with this package.
"""

from medfn.serving.model import Explanation, Model, Payload, Prediction
from medfn.serving.plane import InferencePlane, ModelEntry
from medfn.serving.runners import CostAwareRunner, Runner, run_inline, server_runner
from medfn.serving.store import LocalStore, ModelStore, S3Store, open_store, verified_artifacts

__all__ = [
    "CostAwareRunner",
    "Explanation",
    "InferencePlane",
    "LocalStore",
    "Model",
    "ModelEntry",
    "ModelStore",
    "Payload",
    "Prediction",
    "Runner",
    "S3Store",
    "open_store",
    "run_inline",
    "server_runner",
    "verified_artifacts",
]
