# syntax=docker/dockerfile:1
# A Lambda container image for one medfn function: for CPU models too large for a zip bundle
# (250 MB unzipped). The same entry point as the zip: functions/<name>/handler.py, which loads
# the model at init and serves HTTP events through Mangum, one request at a time (no batching).
#
#   docker build -f containers/lambda.Dockerfile --build-arg FUNCTION=scan_segmenter \
#       --platform linux/arm64 -t medfn-scan_segmenter .          # from the repository root
#
# function.toml's `architecture` picks --platform (arm64 or amd64).
ARG PYTHON_VERSION=3.12
FROM public.ecr.aws/lambda/python:${PYTHON_VERSION}

# Which function this image is: functions/<FUNCTION>/function.toml names its model.
ARG FUNCTION
# Runtime extras beyond the core: pydicom, highdicom and scipy for DICOM scans and series
# (containers hold the heavy models), boto3 for upload triggers.
ARG EXTRAS=volumes,aws
RUN test -n "${FUNCTION}" || (echo "build with --build-arg FUNCTION=<name>" >&2 && exit 1)
LABEL org.medfn.function="${FUNCTION}" org.medfn.serving.sessions="lambda"

# medfn itself, installed as a package (not editable) with the runtime dependencies only.
COPY pyproject.toml README.md /tmp/medfn/
COPY src /tmp/medfn/src
RUN pip install --no-cache-dir "/tmp/medfn[${EXTRAS}]" && rm -rf /tmp/medfn

# The function as the zip bundle lays it out: function.toml and handler.py at the task root,
# its model under model_store/ beside them (medfn.function.store_location looks there first).
RUN --mount=type=bind,target=/context \
    python /context/containers/copy_function.py /context "${FUNCTION}" \
        "${LAMBDA_TASK_ROOT}" "${LAMBDA_TASK_ROOT}/model_store"

# handler.py sits at the task root whatever the function, so CMD needs no build argument.
CMD ["handler.handler"]
