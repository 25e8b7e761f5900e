"""A served model and its lifecycle, as KServe's: load -> preprocess -> predict -> postprocess.

`Model` itself serves raw tensors (the Open Inference Protocol). Task subclasses in
`medfn.tasks` add `preprocess`/`postprocess` for the task route, configured by `model.toml`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from medfn.config import DATATYPES, ModelConfig, TensorSpec
from medfn.errors import ArtifactError, BadRequest, ModelNotReady, UnprocessableInput, UnsupportedMediaType
from medfn.serving.graph_checks import fixed_dims, graph_problems
from medfn.serving.store import ModelStore, verified_artifacts

if TYPE_CHECKING:
    from medfn.serving.batching import DynamicBatcher
    from medfn.serving.sessions import Device, OverlapSessions
    from medfn.studies.volume import Volume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Payload:
    """A task-route request without its transport: HTTP, the CLI and the scan pipeline make one."""

    data: bytes
    media_type: str  # "image/png", "application/dicom", "application/json", "text/plain", ...
    accept: str = "application/json"
    # A series assembled by the pipeline (medfn.studies), for the tasks that answer about volumes
    volume: Volume | None = None


@dataclass
class Prediction:
    """What a task answers, in the keys every task shares, with its own under one named key."""

    label: str | None  # the answer in a word: the likeliest class, the risk band, the finding
    probabilities: dict[str, float] = field(default_factory=dict)  # label -> p, summing to 1
    details: dict[str, Any] = field(default_factory=dict)  # the task's own, under Model.details_key
    binary: tuple[bytes, str] | None = None  # (content, media type), sent when the caller asks
    inference_ms: float = 0.0
    # Why the answer may not hold: the input lies outside what the model was trained on
    warnings: list[str] = field(default_factory=list)
    sop_instance_uid: str | None = None  # the DICOM image answered, linked without demographics
    # A volume task's label map, (slices, rows, columns) uint8 aligned with Payload.volume: the SEG's frames
    mask: np.ndarray | None = field(default=None, repr=False)

    def answer(self, model: Model, request_id: str) -> dict[str, Any]:
        """The one answer shape: the task route's JSON, `medfn predict`'s, a scan result's."""
        answer: dict[str, Any] = {
            "model": model.name,
            "model_version": str(model.version),
            "request_id": request_id,
            "inference_ms": round(self.inference_ms, 3),
            "label": self.label,
            "probabilities": self.probabilities,
            "warnings": self.warnings,
        }
        notice = model.config.card.get("notice")
        if notice:
            answer["notice"] = str(notice)
        if self.sop_instance_uid:
            answer["sop_instance_uid"] = self.sop_instance_uid
        if self.details:
            answer[model.details_key] = self.details
        return answer


@dataclass
class Explanation:
    """Why a model answered as it did: the prediction, and what moved it."""

    prediction: Prediction
    method: str  # "grad-cam", "occlusion", "probability-map", "leave-one-out", "baseline-replacement"
    # JSON: images {"map": [[...]] low-res, "map_shape", "overlay_png_base64", ...};
    # text {"tokens": [{"token", "weight"}...]}; records {"features": [{"name","weight","value","baseline"}...]}
    details: dict[str, Any]
    overlay: bytes | None = None  # images: the heat map over the input, PNG

    def answer(self, model: Model, request_id: str) -> dict[str, Any]:
        """The prediction's answer, plus `explanation`: {method, details}."""
        return {
            **self.prediction.answer(model, request_id),
            "explanation": {"method": self.method, "details": self.details},
        }


@dataclass
class Model:
    config: ModelConfig
    version: int
    store: ModelStore
    ready: bool = False
    reason: str = "not loaded"
    memory_mb: int = 1024  # the function's memory (function.toml), which input decoding must fit in
    # (version, sha256 of model.onnx) fixed at deploy: a store whose model.toml says otherwise is refused
    pinned: tuple[int, str] | None = None
    # What `load` found wrong in model.toml beside the graph and the task (medfn check lists it).
    problems: list[str] = field(default_factory=list)
    provider: str = ""
    device: Device | None = None  # set with the session (onnxruntime is imported at load)
    session: Any = field(default=None, repr=False)
    # Where calls may overlap on the CPU, the session each call runs on (medfn.serving.sessions).
    overlap: OverlapSessions | None = field(default=None, repr=False)
    # Set by a server (InferencePlane.start_batchers); None: every request runs inline.
    batcher: DynamicBatcher | None = field(default=None, repr=False)
    # The media types the task route takes; empty: only raw tensors through OIP.
    media_types: ClassVar[frozenset[str]] = frozenset()
    # The key of the answer that holds the task's own details (a mask, a risk, a batch).
    details_key: ClassVar[str] = "outputs"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def on_gpu(self) -> bool:
        """Runs wait on a GPU: their CPU time says little of how long they take."""
        return self.device is not None and self.device.kind != "cpu"

    def serving_parameters(self) -> dict[str, str | int | float | bool]:
        """Device and batching figures for `GET /v2/models/{m}` parameters (flat, as OIP wants)."""
        parameters: dict[str, str | int | float | bool] = {
            "device": self.device.label if self.device else "none",
            "dynamic_batching": self.batcher is not None,
        }
        if self.batcher is not None:
            stats = self.batcher.stats.snapshot()
            parameters |= {
                "max_queue_delay_ms": self.batcher.policy.max_queue_delay_ms,
                "batch_requests": stats.requests,
                "batch_count": stats.batches,
                "batch_size_mean": round(stats.mean_batch_size, 3),
                "batch_size_max": stats.max_batch_size,
                "batch_fallbacks": stats.fallbacks,
            }
        return parameters

    # -- lifecycle ---------------------------------------------------------------------------

    def load(self) -> bool:
        """Verify artifacts, make the session, let the task load its extras. Never raises."""
        from medfn.serving.sessions import make_session, overlap_sessions, session_device

        try:
            paths = verified_artifacts(self.store, self.config, self.version)
            if "model.onnx" not in paths:
                raise ArtifactError(f"version {self.version} has no model.onnx")
            self._check_pin()
            self.session = make_session(paths["model.onnx"])
            self.provider = self.session.get_providers()[0]
            self.device = session_device(self.session)
            self.overlap = overlap_sessions(self.session, self._one_thread_session)
            self.problems = graph_problems(self.config, self.session.get_inputs(), self.session.get_outputs())
            if not self.problems:  # the task's own checks read tensors the graph is known to have
                self.load_task(paths)
                self.problems = self.task_problems()
        except ArtifactError as exc:
            return self._not_ready(str(exc))
        except Exception:  # onnxruntime's and the task's own load errors
            log.exception("model %s version %s failed to load", self.name, self.version)
            return self._not_ready(f"version {self.version} could not be loaded (see the function's log)")
        if self.problems:
            return self.refuse(self.problems)
        self.ready, self.reason = True, ""
        return True

    def refuse(self, problems: list[str]) -> bool:
        """Not ready, without loading: model.toml is wrong in ways the load would trip over."""
        self.problems = problems
        return self._not_ready(f"version {self.version}: model.toml does not fit: " + "; ".join(problems))

    def task_problems(self) -> list[str]:
        """What the task finds wrong in model.toml beside the graph; tasks extend this."""
        return []

    def known_dim(self, spec: TensorSpec, axis: int) -> int | None:
        """A declared tensor's size along `axis`, where the graph or model.toml fixes it."""
        graph = {t.name: t for t in [*self.session.get_inputs(), *self.session.get_outputs()]}
        dims = fixed_dims(graph[spec.name])  # empty for a sequence of maps (ZipMap): model.toml says
        fixed = dims[axis] if dims else None
        return fixed if fixed is not None else (spec.shape[axis] if spec.shape[axis] >= 0 else None)

    def _check_pin(self) -> None:
        """The bytes just verified match model.toml; the pin says model.toml is the one deployed.
        A writer who replaced both in the store is refused here."""
        if self.pinned is None:
            return
        version, sha256 = self.pinned
        if self.version != version:
            raise ArtifactError(f"version {self.version} is not the version pinned at deploy ({version})")
        if self.config.sha256.get(self.version, {}).get("model.onnx", "").lower() != sha256.lower():
            raise ArtifactError(f"model.onnx of version {self.version} is not the one pinned at deploy (sha256)")

    def _one_thread_session(self) -> Any:
        """A CPU session with one intra-op thread, built later than the main one: its bytes are
        verified again, so a file replaced since the load is refused, never run."""
        from medfn.serving.sessions import make_session

        path = verified_artifacts(self.store, self.config, self.version)["model.onnx"]
        return make_session(path, threads=1, providers="CPUExecutionProvider")

    def _not_ready(self, reason: str) -> bool:
        log.error("model %s version %s is not ready: %s", self.name, self.version, reason)
        self.ready, self.reason = False, reason
        return False

    def load_task(self, artifacts: dict[str, Any]) -> None:
        """Tasks override this to load what else the version ships (a vocabulary, say)."""

    def ensure_ready(self) -> None:
        if not self.ready:
            raise ModelNotReady(f"model {self.name} version {self.version} is not ready: {self.reason}")

    # -- raw tensors (Open Inference Protocol) -------------------------------------------------

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """Names, datatypes and shapes against `model.toml`; a mismatch is the caller's 400."""
        specs = {spec.name: spec for spec in self.config.inputs}
        for name, array in inputs.items():
            spec = specs.get(name)
            if spec is None:
                raise BadRequest(f"model {self.name} has no input named {name!r}; inputs: {sorted(specs)}")
            _check_tensor(spec, array)
            if self.config.max_batch_size > 0 and array.ndim and array.shape[0] > self.config.max_batch_size:
                raise BadRequest(
                    f"input {name!r} has {array.shape[0]} rows; model {self.name} takes at most"
                    f" {self.config.max_batch_size} a request (max_batch_size)"
                )
        missing = sorted(set(specs) - set(inputs))
        if missing:
            raise BadRequest(f"model {self.name} needs inputs {missing}")

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Validated inputs -> outputs; with a batcher this blocks until the request's batch ran."""
        self.ensure_ready()
        answered = [spec.name for spec in self.config.answered_outputs]
        if self.batcher is not None and set(outputs or ()) <= set(answered):  # its batches run these only
            return self.refuse_non_finite(self.batcher.submit(inputs, outputs).result())
        return self.refuse_non_finite(self.execute(inputs, outputs or answered))

    def refuse_non_finite(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs as they are, unless one holds NaN or infinity: that is never an answer."""
        for name, array in outputs.items():
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise UnprocessableInput(
                    f"model {self.name} gave a non-finite value in output {name!r} for this input; no answer is given"
                )
        return outputs

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        """One session run, of one request or of a whole batch."""
        from medfn.serving.sessions import run_session

        if self.overlap is None:
            return dict(zip(names, run_session(self.session, names, inputs, self.device), strict=True))
        session, main = self.overlap.acquire()
        try:
            return dict(zip(names, run_session(session, names, inputs, self.device), strict=True))
        finally:
            self.overlap.release(main)

    # -- the task route ----------------------------------------------------------------------

    def preprocess(self, payload: Payload) -> tuple[dict[str, np.ndarray], Any]:
        """Payload -> input tensors, plus any context postprocess needs."""
        raise UnsupportedMediaType(
            f"model {self.name} (task {self.config.task}) takes tensors only: use /v2/models/{self.name}/infer"
        )

    def request_body(self) -> dict[str, Any] | None:
        """The task route's body as an OpenAPI requestBody, from model.toml; None: tensors only."""
        return None

    def postprocess(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload) -> Prediction:
        return Prediction(label=None, details={name: value.tolist() for name, value in outputs.items()})

    def predict(self, payload: Payload) -> Prediction:
        inputs, context = self.prepare(payload)
        started = time.perf_counter()
        outputs = self.run(inputs)
        return self.finish(outputs, context, payload, (time.perf_counter() - started) * 1000.0)

    def explain(self, payload: Payload) -> Explanation:
        """The prediction and why; tasks that can say why override this (medfn.explain)."""
        self.ensure_ready()
        raise BadRequest(f"model {self.name} (task {self.config.task}) cannot explain its answers")

    def prepare(self, payload: Payload) -> tuple[dict[str, np.ndarray], Any]:
        """`predict` up to the run: the media type check, then preprocess."""
        self.ensure_ready()
        if payload.media_type not in self.media_types:
            accepted = ", ".join(sorted(self.media_types)) or "none (tensors only)"
            raise UnsupportedMediaType(f"content type {payload.media_type!r} is not accepted; accepted: {accepted}")
        return self.preprocess(payload)

    def finish(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload, inference_ms: float) -> Prediction:
        """`predict` after the run: postprocess, with the run's duration."""
        prediction = self.postprocess(outputs, context, payload)
        prediction.inference_ms = inference_ms
        return prediction


def _check_tensor(spec: TensorSpec, array: np.ndarray) -> None:
    want = np.dtype(DATATYPES[spec.datatype])
    if array.dtype != want:
        raise BadRequest(f"input {spec.name!r} must be {spec.datatype}")
    if not spec.accepts_shape(tuple(array.shape)):
        raise BadRequest(f"input {spec.name!r} has shape {list(array.shape)}; the model takes {list(spec.shape)}")
    if array.size == 0:  # a recurrent graph given an empty sequence aborts the whole process
        raise BadRequest(f"input {spec.name!r} has shape {list(array.shape)}: no elements to run on")
    if array.dtype.kind == "f" and not np.isfinite(array).all():  # checked after the cast to the input's type
        raise BadRequest(
            f"input {spec.name!r} holds a value that is not a finite {spec.datatype} number"
            " (NaN, infinity, or beyond the type's range)"
        )
