"""The Open Inference Protocol v2 (KServe / Triton REST), without its transport.

    codec.py        request bodies (JSON, or JSON then binary tensors) -> numpy, and back
    tensor_json.py  the JSON reader that puts each tensor's numbers straight into numpy

The routes that speak it are medfn.http.inference_protocol_routes.
"""

from medfn.inference_protocol.codec import InferRequest, encode_response, parse_request

__all__ = ["InferRequest", "encode_response", "parse_request"]
