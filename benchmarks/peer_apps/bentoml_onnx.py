"""BentoML serving one ONNX file with onnxruntime, on the Open Inference Protocol v2 JSON route,
so the load generator sends it the very bytes it sends medfn and KServe. BentoML's defaults:
a synchronous API method (BentoML runs it in its thread pool), one worker.

Runs inside .medfn/peers/bentoml (benchmarks/peers.py), started by benchmarks/servers.py:
    MEDFN_BENCH_MODEL=M MEDFN_BENCH_ONNX=F bentoml serve bentoml_onnx:OnnxService --port P
"""

import os

import bentoml
import numpy as np
import onnxruntime

MODEL = os.environ["MEDFN_BENCH_MODEL"]
DTYPES = {"FP32": np.float32, "INT64": np.int64}


@bentoml.service
class OnnxService:
    def __init__(self) -> None:
        self.session = onnxruntime.InferenceSession(os.environ["MEDFN_BENCH_ONNX"])
        self.names = [output.name for output in self.session.get_outputs()]

    # The OIP body is {"inputs": [...]}: BentoML maps the JSON object's keys onto the parameters.
    @bentoml.api(route=f"/v2/models/{MODEL}/infer")
    def infer(self, inputs: list[dict]) -> dict:
        feeds = {t["name"]: np.asarray(t["data"], dtype=DTYPES[t["datatype"]]).reshape(t["shape"]) for t in inputs}
        results = self.session.run(self.names, feeds)
        return {
            "model_name": MODEL,
            "outputs": [
                {"name": n, "datatype": "FP32", "shape": list(a.shape), "data": a.ravel().tolist()}
                for n, a in zip(self.names, results, strict=True)
            ],
        }
