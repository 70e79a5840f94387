# Switchboard image, installed the same way as on a workstation: through the Makefile.
#
# CPU (default):
#   docker build -t switchboard .
# CUDA GPU: torch's default PyPI wheel is the CUDA build and brings its own CUDA libraries, so
# the base stays the same; the host needs an NVIDIA driver recent enough for that wheel and the
# NVIDIA container toolkit (run with --gpus all):
#   docker build -t switchboard:cuda --build-arg TORCH_PIP_ARGS= .
# Run (Telegram/Slack credentials in .env; the database lives on the /data volume). A stop may
# take twice SHUTDOWN_GRACE while answers in flight finish, so give it more than Docker's 10 s:
#   docker run --env-file .env -p 8080:8080 -v switchboard-data:/data --stop-timeout 45 switchboard
#   docker run -it -v switchboard-data:/data switchboard chat     # console chat, no platform
#   docker run --env-file .env -v /srv/docs:/docs:ro -v switchboard-data:/data switchboard kb add /docs
# The GPU model host (bots set MODEL_HOST_URL=http://gpu-host:8001 and the same key):
#   docker run --gpus all -p 8001:8001 -e MODEL_HOST_API_KEY=... \
#     --health-cmd 'python3 -c "import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8001/healthz\")"' \
#     switchboard:cuda serve-models --host 0.0.0.0 --port 8001
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/app/.venv/bin:$PATH \
    DATA_DIR=/data \
    MODELS_DIR=/opt/switchboard/models \
    HF_HOME=/data/huggingface \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080

# tini is PID 1: it passes SIGTERM on, so a stop during start-up is not ignored.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make ca-certificates tini \
 && if ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get install -y --no-install-recommends python3 python3-venv python3-pip; \
    fi \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch first, in a layer of its own: an edit to the code does not download it again.
COPY Makefile pyproject.toml ./
RUN make .venv/.torch TORCH_SPEC="${TORCH_SPEC}" TORCH_PIP_ARGS="${TORCH_PIP_ARGS}"
COPY . .
RUN make install models \
        TORCH_SPEC="${TORCH_SPEC}" TORCH_PIP_ARGS="${TORCH_PIP_ARGS}" DATA_DIR=/opt/switchboard \
 && rm -rf /opt/switchboard/models/gguf

# Not root: the service answers the internet. It writes only to /data.
RUN useradd --system --uid 10001 --home-dir /data switchboard \
 && mkdir -p /data && chown switchboard /data
USER switchboard
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8080'), timeout=4)" || exit 1
ENTRYPOINT ["tini", "--", "switchboard"]
CMD ["run"]
