#!/usr/bin/env bash
# `make image-test`: runs the image the way a locked-down pod would (its non-root user, a
# read-only root file system, /tmp a tmpfs, state only in a folder mounted from the host),
# and checks that it works as a code location: the CLI, the definitions, one day landed and
# the dbt models + raw_snapshot + validated_flights materialized by Dagster's own CLI (one
# process per step, as step pods would run them). Then, on the host, that the Delta tables
# are in the mounted lake.
#
#   deploy/image/image-test.sh IMAGE      (CONTAINER_TOOL, EXPECT_COMMIT, KEEP=1 optional)
set -euo pipefail

IMAGE="${1:?usage: image-test.sh IMAGE}"
TOOL="${CONTAINER_TOOL:-podman}"
EXPECT_COMMIT="${EXPECT_COMMIT:-}"
DAY=2013-01-01
UID_IN_IMAGE=10001

fail() { echo "image-test: FAIL: $*" >&2; exit 1; }
step_start=0
step() { step_start=$(date +%s); echo "image-test: $*"; }
took() { echo "image-test:   ok ($(( $(date +%s) - step_start )) s)"; }

command -v "$TOOL" >/dev/null || fail "$TOOL is missing"
"$TOOL" image inspect "$IMAGE" >/dev/null 2>&1 || fail "no image $IMAGE (make image first)"
begin=$(date +%s)

# The volume the pod would mount at TRAINFLOW_HOME; DAGSTER_HOME inside it, with the local
# profile's instance settings (SQLite), as `make instance` does for a checkout.
STATE="$(mktemp -d "${TMPDIR:-/tmp}/trainflow-image-test.XXXXXX")"
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then echo "image-test: state kept in $STATE"; return; fi
  # Rootless podman: the container's files belong to a subordinate uid.
  rm -rf "$STATE" 2>/dev/null || "$TOOL" unshare rm -rf "$STATE" || true
}
trap cleanup EXIT
mkdir -p "$STATE/dagster"
cp "$(dirname "$0")/../../dagster.yaml" "$STATE/dagster/dagster.yaml"
if [ "$(id -u)" = 0 ]; then
  chown -R "$UID_IN_IMAGE:$UID_IN_IMAGE" "$STATE"
else
  chmod -R a+rwX "$STATE"  # rootless: the image's uid maps to some subordinate uid
fi

# What a restricted pod gets: read-only root, a writable /tmp only, no capabilities.
FLAGS=(--rm --read-only --tmpfs /tmp:rw,mode=1777 --cap-drop=ALL
       --security-opt=no-new-privileges -v "$STATE:/var/lib/trainflow"
       -e DAGSTER_HOME=/var/lib/trainflow/dagster -e PYTHONWARNINGS=ignore)
run() { "$TOOL" run "${FLAGS[@]}" "$IMAGE" "$@"; }

step "the image runs as a non-root user, with no compiler, on a read-only root"
user="$(run id -u)"
[ "$user" = "$UID_IN_IMAGE" ] || fail "runs as uid $user, expected $UID_IN_IMAGE"
run sh -c 'for c in gcc cc c++ g++ clang make; do
             if command -v "$c" >/dev/null; then echo "compiler in the image: $c"; exit 1; fi
           done' || fail "the final stage has a compiler or build tool"
# As root, so that only the read-only mount (not file permissions) can refuse the write.
refused="$("$TOOL" run "${FLAGS[@]}" --user 0 "$IMAGE" sh -c 'touch /opt/venv/written 2>&1' || true)"
case "$refused" in
  *"Read-only file system"*) ;;
  *) fail "the root file system is writable despite --read-only: ${refused:-touch succeeded}" ;;
esac
took

step "trainflow --help"
run trainflow --help | grep -q "land" || fail "trainflow --help does not list 'land'"
took

step "the definitions load (dagster definitions validate, asset list)"
run dagster definitions validate -m trainflow.definitions >"$STATE/validate.log" 2>&1 \
  || { tail -n 40 "$STATE/validate.log" >&2; fail "dagster definitions validate failed"; }
assets="$(run python -c '
from trainflow.definitions import defs
keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
print(len(keys), " ".join(keys))')"
echo "image-test:   $assets" | cut -c1-200
case " $assets " in *" validated_flights "*) ;; *) fail "validated_flights is not among the assets" ;; esac
took

step "the baked commit (BUILD_COMMIT) is what run manifests will record"
baked="$(run python -c '
from trainflow.settings import Settings
print(Settings.from_env().git_commit or "")')"
label="$("$TOOL" image inspect --format '{{ index .Config.Labels "org.opencontainers.image.revision" }}' "$IMAGE")"
echo "image-test:   BUILD_COMMIT=${baked:-none} label=${label:-none}"
[ "$baked" = "$label" ] || fail "BUILD_COMMIT ($baked) and the revision label ($label) differ"
if [ -n "$EXPECT_COMMIT" ] && [ "$baked" != "$EXPECT_COMMIT" ]; then
  fail "the image carries commit '${baked:-none}', expected $EXPECT_COMMIT (rebuild with make image)"
fi
took

step "trainflow land --day $DAY (into the mounted warehouse)"
run trainflow land --day "$DAY" >"$STATE/land.log" 2>&1 \
  || { tail -n 40 "$STATE/land.log" >&2; fail "trainflow land failed"; }
tail -n 1 "$STATE/land.log" | cut -c1-160
took

step "dagster asset materialize --select '*validated_flights' --partition $DAY"
run dagster asset materialize -m trainflow.definitions --select '*validated_flights' \
  --partition "$DAY" >"$STATE/materialize.log" 2>&1 \
  || { grep -E "ERROR|Error|FAILURE" "$STATE/materialize.log" | tail -n 20 >&2
       tail -n 40 "$STATE/materialize.log" >&2; fail "dagster asset materialize failed"; }
grep -q RUN_SUCCESS "$STATE/materialize.log" || fail "no RUN_SUCCESS in the materialize log"
grep -o 'STEP_SUCCESS - Finished execution of step "[a-z_]*" in [0-9.]*m\?s' \
  "$STATE/materialize.log" | sed 's/^/image-test:   /'
took

step "on the host: the Delta tables are in the mounted lake"
for table in raw_snapshot validated_flights; do
  ls "$STATE/lake/$table/_delta_log/"*.json >/dev/null 2>&1 \
    || fail "no Delta table $table under the mounted lake ($STATE/lake)"
done
ls -d "$STATE"/dbt/target/*/run_results.json >/dev/null 2>&1 \
  || fail "dbt wrote no run results under TRAINFLOW_HOME/dbt/target"
echo "image-test:   $(ls "$STATE/lake" | tr '\n' ' ')"
# Anything that tried to write into the image would have said so.
if grep -l "Read-only file system" "$STATE"/*.log; then
  fail "a command tried to write to the read-only root (see the logs above)"
fi
took

echo "image-test: PASS $IMAGE in $(( $(date +%s) - begin )) s"
