# spark-serve: NVFP4 LLM serving with vLLM on DGX Spark (GB10, SM 12.1, aarch64)
# and other Blackwell GPUs. vLLM, FlashInfer and torch come from the base image
# and are never changed; this image adds spark-serve, Ray (vLLM's image has
# shipped none since vLLM PR #36170), llama-benchy, matplotlib and vLLM's router. No secrets and
# no model weights in any layer: checkpoints are downloaded at run time into the
# HF_HOME volume.
#
# BASE_IMAGE: vLLM's multi-arch (amd64 + arm64) CUDA 13 build of the release
# spark-serve is tested with. Since vLLM v0.20.0 the unsuffixed tag (vX.Y.Z) is
# the CUDA 13 build and -cu129 the CUDA 12.9 variant; -cu130 tags stop at
# v0.20.0. GB10 needs CUDA 13. NVIDIA's NGC vLLM container is the alternative:
# pass its tag as BASE_IMAGE (the version check below still applies).
ARG BASE_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${BASE_IMAGE}

# Re-declared after FROM so that the label below sees it.
ARG BASE_IMAGE
# vllm-release (default): vLLM's CUDA image, checked for a CUDA 13 torch.
# cpu-standin: only the tests' stand-in for that image (tests/standin), which
# carries vLLM's CPU build; nothing else relaxes the CUDA check.
ARG ENGINE_BASE=vllm-release
ARG VLLM_VERSION=0.32.0
ARG FLASHINFER_VERSION=0.7.0.post1
# Ray as the tests use it. No extra: vLLM's Ray executor needs Ray's compiled
# graphs (in Ray itself); the cgraph extra adds only cupy for
# VLLM_USE_RAY_COMPILED_DAG_CHANNEL_TYPE=nccl, and the dashboard (default extra) is off.
ARG RAY_VERSION=2.52.0
ARG LLAMA_BENCHY_VERSION=0.4.0
# vLLM's router (vllm-project/router; manylinux aarch64 and x86_64 wheels): MODELS puts it in
# front of an engine per model, routing by the request's model (--enable-igw).
ARG VLLM_ROUTER_VERSION=0.1.17
ARG MATPLOTLIB_VERSION=3.11.2

LABEL org.opencontainers.image.title="spark-serve" \
      org.opencontainers.image.description="NVFP4 LLM serving with vLLM on NVIDIA DGX Spark and Blackwell GPUs" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /tmp/spark-serve-src

COPY pyproject.toml README.md ./
COPY entrypoint ./entrypoint
COPY server ./server
COPY configs ./configs
COPY monitoring ./monitoring

# Fail the build on an untested engine; then add spark-serve (its configs/ and
# monitoring/ go into the package), Ray, llama-benchy and matplotlib under
# constraints made from the base's own packages: the build fails in one line
# naming any base package that would change version or disappear.
RUN python3 -m entrypoint.engine.versions "vllm==${VLLM_VERSION}" "flashinfer-python==${FLASHINFER_VERSION}" \
        --torch-cuda 13 --base "${ENGINE_BASE}" \
    && python3 -m entrypoint.engine.baseguard --no-cache-dir --no-build-isolation . "ray==${RAY_VERSION}" \
        "llama-benchy==${LLAMA_BENCHY_VERSION}" "matplotlib==${MATPLOTLIB_VERSION}" \
        "vllm-router==${VLLM_ROUTER_VERSION}" \
    && python3 -I -c "import entrypoint.cli, entrypoint.doctor.judge, entrypoint.cluster.node, server.app, ray, ray.experimental.compiled_dag_ref" \
    && vllm-router --help >/dev/null \
    && spark-serve profiles >/dev/null \
    && rm -rf /tmp/spark-serve-src \
    && useradd --system --uid 990 --user-group --create-home --home-dir /home/spark \
        --shell /usr/sbin/nologin spark \
    && mkdir -p /cache/huggingface /cache/vllm /cache/flashinfer /cache/triton /cache/cuda /run/spark-serve \
    && chown -R spark:spark /cache /run/spark-serve \
    && chmod 2775 /run/spark-serve

# Every cache written at run time is on a volume, so a restart is warm: the
# checkpoint (HF_HOME); vLLM's torch.compile cache with inductor's kernels and
# whatever else goes to ~/.cache or ~/.config (VLLM_CACHE_ROOT, XDG_*); FlashInfer's
# JIT kernels (minutes to build on a Spark); Triton's kernels; the CUDA JIT cache.
# /tmp holds only ZMQ sockets and locks of the running engine: ephemeral by design.
ENV HF_HOME=/cache/huggingface \
    VLLM_CACHE_ROOT=/cache/vllm \
    TORCHINDUCTOR_CACHE_DIR=/cache/vllm/inductor \
    XDG_CACHE_HOME=/cache/vllm/xdg-cache \
    XDG_CONFIG_HOME=/cache/vllm/xdg-config \
    FLASHINFER_WORKSPACE_BASE=/cache/flashinfer \
    TRITON_CACHE_DIR=/cache/triton \
    TRITON_HOME=/cache/triton \
    CUDA_CACHE_PATH=/cache/cuda \
    STATE_DIR=/run/spark-serve \
    HOST=0.0.0.0 \
    PORT=8000 \
    SIDECAR_PORT=8001 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    PYTHONUNBUFFERED=1

# A system uid (below 1000): no host login user has it, so logind's RemoveIPC
# never touches the engine's shared memory.
USER 990:990
WORKDIR /home/spark
EXPOSE 8000 8001

# vLLM's own /health; a first start (download + load + JIT) takes long, hence the start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=45m --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health', timeout=4)"]

ENTRYPOINT ["spark-serve"]
CMD ["launch"]
