# spark-serve: NVFP4 LLM serving with vLLM on DGX Spark (GB10, SM 12.1, aarch64)
# and other Blackwell GPUs. vLLM, FlashInfer and torch come from the base image;
# this image adds only spark-serve. No secrets and no model weights in any layer:
# checkpoints are downloaded at run time into the HF_HOME volume.
#
# BASE_IMAGE: vLLM's multi-arch (amd64 + arm64) CUDA 13 build of the release
# spark-serve is tested with. Since vLLM v0.20.0 the unsuffixed tag (vX.Y.Z) is
# the CUDA 13 build and -cu129 the CUDA 12.9 variant; -cu130 tags stop at
# v0.20.0. GB10 needs CUDA 13. NVIDIA's NGC vLLM container is the alternative:
# pass its tag as BASE_IMAGE (the version check below still applies).
ARG BASE_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${BASE_IMAGE}

ARG VLLM_VERSION=0.32.0
ARG FLASHINFER_VERSION=0.7.0.post1

LABEL org.opencontainers.image.title="spark-serve" \
      org.opencontainers.image.description="NVFP4 LLM serving with vLLM on NVIDIA DGX Spark and Blackwell GPUs" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/spark-serve

COPY pyproject.toml README.md ./
COPY entrypoint ./entrypoint
COPY server ./server
COPY configs ./configs
COPY monitoring ./monitoring

# Fail the build on an untested engine, then install spark-serve alone (and
# what `spark-serve bench` drives: llama-benchy, pinned, and matplotlib): its
# dependencies (pydantic, pyyaml, huggingface_hub, fastapi, uvicorn, httpx,
# prometheus-client, nvidia-ml-py, psutil, and Ray for more than one Spark) are
# already part of the vLLM image.
RUN python3 -m entrypoint.versions "vllm==${VLLM_VERSION}" "flashinfer-python==${FLASHINFER_VERSION}" \
        --torch-cuda 13 \
    && python3 -m pip install --no-cache-dir --no-deps --no-build-isolation . \
    && python3 -m pip install --no-cache-dir "llama-benchy==0.4.0" "matplotlib>=3.8" \
    && python3 -c "import entrypoint.cli, entrypoint.doctor.judge, entrypoint.cluster.node, server.app, ray" \
    && useradd --system --uid 990 --user-group --create-home --home-dir /home/spark \
        --shell /usr/sbin/nologin spark \
    && mkdir -p /cache/huggingface /cache/vllm /cache/flashinfer /cache/triton /cache/cuda /run/spark-serve \
    && chown -R spark:spark /cache /run/spark-serve

# Caches live on volumes so a restart is warm: the checkpoint (HF_HOME), vLLM's
# torch.compile cache, FlashInfer's JIT kernels (minutes to build on a Spark),
# Triton's kernels and the CUDA JIT cache.
ENV HF_HOME=/cache/huggingface \
    VLLM_CACHE_ROOT=/cache/vllm \
    FLASHINFER_WORKSPACE_BASE=/cache/flashinfer \
    TRITON_CACHE_DIR=/cache/triton \
    CUDA_CACHE_PATH=/cache/cuda \
    STATE_DIR=/run/spark-serve \
    PROFILES_DIR=/opt/spark-serve/configs/profiles \
    MONITORING_DIR=/opt/spark-serve/monitoring \
    HOST=0.0.0.0 \
    PORT=8000 \
    SIDECAR_PORT=8001 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1

# A system uid (below 1000): no host login user has it, so logind's RemoveIPC
# never touches the engine's shared memory.
USER 990:990
EXPOSE 8000 8001

# vLLM's own /health; a first start (download + load + JIT) takes long, hence the start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=45m --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health', timeout=4)"]

ENTRYPOINT ["spark-serve"]
CMD ["launch"]
