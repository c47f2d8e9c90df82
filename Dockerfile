# The trainflow code location: Dagster's Helm chart runs it as a user-code deployment
# (`dagster api grpc -m trainflow.definitions`), and its run and step pods
# (`dagster api execute_run` / `execute_step`) run from the same image. docs/deploy.md.
#
#   make image                    # podman build on the official python:3.11-slim-bookworm
#   make image-base image BASE_IMAGE=localhost/trainflow-base:bookworm   # no registry
#
# Build arguments: BASE_IMAGE (any Debian-like image with python3.11 and python3 -m venv),
# WITH_TORCH=1 (the `torch` extra; TORCH_INDEX_URL may name a CPU wheel index, and wheels
# in deploy/image/wheels/ are used first), GIT_COMMIT (baked into the package's
# BUILD_COMMIT for run manifests; empty for a dirty tree) and VERSION (a label).
# Fully qualified: podman refuses an unqualified short name without a terminal to ask on.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------
# deps: the virtual environment with the runtime dependencies only. Its layers change only
# when a lock (or the torch extra) does, and the final image copies it as one layer that a
# code change leaves alone.
FROM ${BASE_IMAGE} AS deps

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    LANG=C.UTF-8

# Certificates the builder must trust to reach the package index (a proxy that inspects
# TLS): *.crt files in deploy/image/extra-ca/, git-ignored and usually absent. Only the
# build stages trust them; the final image keeps its base's store. pip is pointed at the
# system store because it otherwise reads its own bundled copy and would ignore them.
COPY deploy/image/extra-ca/ /usr/local/share/ca-certificates/extra/
RUN if ls /usr/local/share/ca-certificates/extra/*.crt >/dev/null 2>&1; then \
        update-ca-certificates >/dev/null 2>&1; fi
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements-bootstrap.lock requirements-runtime.lock /build/
RUN pip install --quiet --require-hashes -r /build/requirements-bootstrap.lock \
 && pip install --quiet --require-hashes -r /build/requirements-runtime.lock

# Optional PyTorch Lightning family (pyproject.toml's `torch` extra). torch is not in the
# lock: its CPU build comes from deploy/image/wheels/ or TORCH_INDEX_URL, since a plain
# resolver would pull the CUDA wheels. Everything already installed is pinned as a
# constraint, so the extra can add packages but never move a locked one.
ARG WITH_TORCH=0
ARG TORCH_INDEX_URL=""
COPY pyproject.toml /build/
COPY deploy/image/wheels/ /build/wheels/
RUN if [ "$WITH_TORCH" = 1 ]; then \
        pip freeze --all > /build/installed.txt \
     && python -c 'import tomllib; print("\n".join(tomllib.load(open("/build/pyproject.toml", "rb"))["project"]["optional-dependencies"]["torch"]))' > /build/torch.txt \
     && pip install --quiet --find-links /build/wheels \
            ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
            -c /build/installed.txt -r /build/torch.txt \
     && python -c "import torch, pytorch_lightning; print('torch', torch.__version__)"; \
    fi \
 && pip check

# ---------------------------------------------------------------------------------------
# wheel: trainflow's wheel (configs, the dbt project with its parsed manifest and the lock
# bundled; trainflow/packaging.py), built by the copied sources themselves. The context
# has no .git, so the commit comes from GIT_COMMIT.
FROM deps AS wheel

COPY README.md requirements.lock /build/
COPY configs/ /build/configs/
COPY dbt_project/ /build/dbt_project/
COPY src/ /build/src/
ARG GIT_COMMIT=""
RUN cd /build && PYTHONPATH=/build/src python -m trainflow.packaging --out /dist \
        ${GIT_COMMIT:+--commit "$GIT_COMMIT"}

# ---------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS final

# LightGBM's wheel links the system's OpenMP runtime (libgomp1), which slim images lack;
# the debootstrap base (deploy/image/debian-base.sh) has it already, so needs no apt here.
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it and volume ownership
# (fsGroup) is predictable. The passwd entry is there because getpass.getuser() (MLflow's
# run user) fails without one.
RUN if ! ldconfig -p | grep -q 'libgomp\.so\.1'; then \
        apt-get update -qq && apt-get install -y -qq --no-install-recommends libgomp1 >/dev/null \
     && rm -rf /var/lib/apt/lists/*; fi \
 && groupadd --gid 10001 trainflow \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin trainflow \
 && mkdir -p /var/lib/trainflow /opt/dagster/dagster_home \
 && chown 10001:10001 /var/lib/trainflow /opt/dagster/dagster_home

# No compiler or build tool comes along: only the finished environment, then trainflow's
# wheel on top (its own small layer; pip compiles its bytecode, so nothing writes
# __pycache__ at run time).
COPY --from=deps /opt/venv /opt/venv
COPY --from=wheel /dist/ /tmp/dist/
RUN /opt/venv/bin/pip install --quiet --no-deps --no-index --no-cache-dir \
        --disable-pip-version-check --root-user-action=ignore /tmp/dist/trainflow-*.whl \
 && rm -rf /tmp/dist

# Everything a process writes goes to TRAINFLOW_HOME (a volume: lake, warehouse, MLflow,
# dbt's profile and target), DAGSTER_HOME when set (a volume; the Helm chart's convention
# is /opt/dagster/dagster_home) or /tmp (an emptyDir): the root file system can be
# read-only. HOME=/tmp catches what writes under ~ (dbt's ~/.dbt, duckdb's extensions,
# Dagster's ~/.dagster without DAGSTER_HOME); MPLCONFIGDIR is matplotlib's font cache.
# Bytecode was compiled at install time, so nothing tries to write __pycache__.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    DAGSTER_DISABLE_TELEMETRY=1 \
    TRAINFLOW_HOME=/var/lib/trainflow

USER 10001:10001
WORKDIR /tmp
EXPOSE 3030

# Last, so that a new commit invalidates no layer above.
ARG GIT_COMMIT=""
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="trainflow" \
      org.opencontainers.image.description="trainflow Dagster code location (NYC flights 2013 training pipeline)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"

# No ENTRYPOINT: the Helm chart and the k8s run launcher / k8s_job_executor set the
# container's args to a whole `dagster api ...` command line, which must run as given.
# The default is the code server, as the chart would start it.
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "trainflow.definitions"]
