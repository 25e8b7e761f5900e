# syntax=docker/dockerfile:1
# The GPU container for `accelerator = "gpu"` functions: the same FastAPI app as Lambda, served
# by uvicorn (`medfn serve --only <function>`), with dynamic batching for models whose
# model.toml has [dynamic_batching] and ONNX Runtime's CUDA execution provider with I/O
# binding. x86_64 only (NVIDIA's CUDA images and the onnxruntime-gpu wheels).
#
#   docker build -f containers/gpu.Dockerfile --build-arg FUNCTION=scan_segmenter \
#       -t medfn-gpu-scan_segmenter .                             # from the repository root
#   docker run --gpus all -p 8080:8080 medfn-gpu-scan_segmenter
#   curl -sk https://localhost:8080/v2/health/ready
#
# HTTPS only: the server makes a key and a self-signed certificate at each start
# (containers/gpu_serve_tls.py); in AWS the NLB re-encrypts to it. Ready: GET /v2/health/ready. Metrics: GET /metrics. Device and batch figures:
# GET /v2/models/<model> (parameters.device reads "cuda:0" on a GPU).
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG FUNCTION
ARG EXTRAS=dicom
# onnxruntime-gpu wheels on PyPI target one CUDA major at a time: if the release pinned here
# was built for another CUDA than the base image, point ORT_GPU_INDEX_URL at ONNX Runtime's feed.
ARG ORT_GPU_SPEC="onnxruntime-gpu>=1.31,<2"
ARG ORT_GPU_INDEX_URL=""
RUN test -n "${FUNCTION}" || (echo "build with --build-arg FUNCTION=<name>" >&2 && exit 1)
LABEL org.medfn.function="${FUNCTION}" org.medfn.serving.sessions="gpu"

# Ubuntu 24.04's own Python is 3.12; a venv keeps pip away from the system's packages. openssl
# makes the server's key and certificate at start.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12 python3.12-venv openssl \
 && rm -rf /var/lib/apt/lists/* \
 && python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The `gpu` extra brings onnxruntime-gpu and uvicorn. medfn's core also depends on the CPU
# `onnxruntime` wheel, and both wheels write the same `onnxruntime` module: remove both, then
# put the GPU one back alone, and check that it offers CUDA.
COPY pyproject.toml README.md /tmp/medfn/
COPY src /tmp/medfn/src
RUN pip install --no-cache-dir "/tmp/medfn[gpu,${EXTRAS}]" \
 && pip uninstall -y onnxruntime onnxruntime-gpu \
 && pip install --no-cache-dir --no-deps \
        ${ORT_GPU_INDEX_URL:+--index-url "${ORT_GPU_INDEX_URL}"} "${ORT_GPU_SPEC}" \
 && python -c "import onnxruntime as ort; assert 'CUDAExecutionProvider' in ort.get_available_providers()" \
 && rm -rf /tmp/medfn

# The function and only its model, laid out as in a checkout: /srv/functions/<name>, /srv/model_store.
WORKDIR /srv
RUN --mount=type=bind,target=/context \
    python /context/containers/copy_function.py /context "${FUNCTION}" \
        "/srv/functions/${FUNCTION}" /srv/model_store

# CUDA first. Without a usable GPU medfn logs the fallback and serves on CPU; set
# MEDFN_REQUIRE_CUDA=1 to make the model not ready (503) there instead.
ENV MEDFN_FUNCTION=${FUNCTION} \
    MEDFN_FUNCTIONS=/srv/functions \
    MEDFN_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider \
    MEDFN_TLS_DIR=/srv/.medfn/tls
COPY containers/gpu_serve_tls.py /srv/gpu_serve_tls.py
RUN useradd --system --uid 10001 medfn && mkdir -p /srv/.medfn && chown medfn /srv/.medfn
USER medfn
EXPOSE 8080
# `medfn serve` over HTTPS. Shell form, so the function named at build time is expanded; exec
# makes the server PID 1.
CMD exec python /srv/gpu_serve_tls.py --only "${MEDFN_FUNCTION}" --host 0.0.0.0 --port 8080
