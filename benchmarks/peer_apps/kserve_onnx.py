"""KServe's Python model server running one ONNX file with onnxruntime: a custom Model, as
KServe's documentation shows one, with the server's and onnxruntime's defaults.

Runs inside .medfn/peers/kserve (benchmarks/peers.py), started by benchmarks/servers.py:
    python kserve_onnx.py --model_name M --model_file F --http_port P --grpc_port Q
"""

import argparse
import uuid

import onnxruntime
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server


class OnnxModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self.session = onnxruntime.InferenceSession(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        names = [output.name for output in self.session.get_outputs()]
        results = self.session.run(names, feeds)
        outputs = []
        for name, array in zip(names, results, strict=True):
            output = InferOutput(name=name, shape=list(array.shape), datatype="FP32")
            output.set_data_from_numpy(array, binary_data=False)
            outputs.append(output)
        return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=outputs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_file", required=True)
    args, _ = parser.parse_known_args()
    ModelServer().start([OnnxModel(args.model_name, args.model_file)])
