#!/usr/bin/env bash
# The image check CI runs after the tests (.ci/run, `make image-ci`): the container tools from
# Debian when missing, a python3.11 base from Debian packages (no registry needed), the
# image, then `make image-test` (a step run read-only as the image's non-root user).
# About 5 minutes on a 2-core machine; docs/deploy.md has the figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
begin=$(date +%s)

if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null \
   || ! command -v runc >/dev/null; then
  echo "image-ci: installing podman, debootstrap and runc from Debian"
  apt-get install -y -qq podman buildah debootstrap uidmap runc >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq podman buildah debootstrap uidmap runc >/dev/null; }
fi
# runc and fixed ulimits: podman's defaults fail inside the containers CI machines are.
export CONTAINERS_CONF="$PWD/deploy/image/containers.conf"

make image-base
# Behind a TLS-inspecting proxy the build stages must trust the machine's CA store (the
# final image keeps its base's own store).
extra_ca=""
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then extra_ca=/etc/ssl/certs/ca-certificates.crt; fi
make image IMAGE=trainflow:ci BASE_IMAGE=localhost/trainflow-base:bookworm EXTRA_CA="$extra_ca"
make image-test IMAGE=trainflow:ci
echo "image-ci: image built and tested in $(( $(date +%s) - begin )) s"
