# prunekit for x86-64 GPU servers: CUDA + TensorRT, prunekit with its TensorRT extra.
#
#   docker build -t prunekit .
#   docker run --gpus all --rm -v "$PWD/export:/work/export" prunekit compress --target cpu-ort --latency-budget 0.5
#   docker run --gpus all --rm -v "$PWD/export:/work/export" prunekit export export/RUN --format engine --target rtx
#
# Engines are not portable: build them in the container on the GPU that will run them.
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/prunekit \
    PATH=/opt/prunekit/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/prunekit

WORKDIR /src
COPY pyproject.toml README.md ./
COPY prunekit ./prunekit
COPY profiles ./profiles
# The same install command as the README, plus the TensorRT extra (tensorrt + cuda-python wheels).
RUN pip install ".[tensorrt]"

RUN useradd --create-home --uid 1000 prunekit \
    && mkdir -p /work/export \
    && chown -R prunekit:prunekit /work
USER 1000
WORKDIR /work

ENTRYPOINT ["prunekit"]
CMD ["--help"]
