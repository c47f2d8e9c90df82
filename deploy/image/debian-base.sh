#!/usr/bin/env bash
# Builds the image's base from Debian packages when no container registry can be reached
# (`make image-base`): a minimal bookworm root file system (its python3 is 3.11, plus
# libgomp1, LightGBM's OpenMP runtime) imported as a local image; then
# `make image BASE_IMAGE=localhost/trainflow-base:bookworm`.
# Needs root, debootstrap and the container tool. The Debian mirror is the one this
# machine's apt already uses (read from its sources, never written into the repository);
# MIRROR=... overrides it.
set -euo pipefail

TOOL="${CONTAINER_TOOL:-podman}"
TAG="${BASE_TAG:-localhost/trainflow-base:bookworm}"
SUITE="${SUITE:-bookworm}"

die() { echo "debian-base: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
command -v "$TOOL" >/dev/null || die "$TOOL is missing"

# The first Debian archive apt knows: deb822 `URIs:` (sources.list.d/*.sources) or a
# one-line `deb URL SUITE ...` entry. Security and other suites are skipped.
mirror_from_apt() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local f
  for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    awk '
      /^[[:space:]]*#/ { next }
      /^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }
      /^deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/) { print $i; exit } } }
    ' "$f"
  done | head -n1
}

MIRROR="${MIRROR:-$(mirror_from_apt)}"
[ -n "$MIRROR" ] || die "no Debian mirror found in apt's sources; set MIRROR=http://.../debian"

ROOT="$(mktemp -d "${TMPDIR:-/tmp}/trainflow-base.XXXXXX")"
LOG="$(mktemp "${TMPDIR:-/tmp}/trainflow-base-log.XXXXXX")"
trap 'rm -rf "$ROOT" "$LOG"' EXIT
start=$(date +%s)
echo "debian-base: debootstrap $SUITE (minbase + python3, python3-venv, ca-certificates, libgomp1)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1 \
  "$SUITE" "$ROOT" "$MIRROR" >"$LOG" 2>&1 || { tail -n 30 "$LOG" >&2; die "debootstrap failed"; }
# The official python images keep no apt lists or caches either.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb
# The official images have `python` and `python3.11` on PATH; the Dockerfile calls `python3`.
tar -C "$ROOT" -c . | "$TOOL" import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "debian-base: $TAG in $(( $(date +%s) - start )) s"
