# Switchboard image, installed the same way as on a workstation: through the Makefile.
#
# CPU (default):
#   docker build -t switchboard .
# CUDA GPU (torch's default PyPI build is the CUDA one; the model host then picks the GPU):
#   docker build -t switchboard:cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_PIP_ARGS= .
# Run (Telegram/Slack credentials in .env; the database lives on the /data volume):
#   docker run --env-file .env -p 8080:8080 -v switchboard-data:/data switchboard
#   docker run -it -v switchboard-data:/data switchboard          # console chat, no platform
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data \
    MODELS_DIR=/opt/switchboard/models \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080

# The slim Python image has python3; CUDA images need it (and venv) from the distribution.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make ca-certificates \
 && if ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get install -y --no-install-recommends python3 python3-venv python3-pip; \
    fi \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
RUN make install models \
        TORCH_SPEC="${TORCH_SPEC}" TORCH_PIP_ARGS="${TORCH_PIP_ARGS}" DATA_DIR=/opt/switchboard \
 && rm -rf /opt/switchboard/models/gguf

VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1
CMD ["/app/.venv/bin/switchboard", "run"]
