#!/usr/bin/env bash
# Runs COMMAND with a throwaway Ceph cluster and S3 gateway (tools/ceph-rgw)
# started for it: MUSCLE_S3_ENDPOINT, MUSCLE_S3_ACCESS_KEY,
# MUSCLE_S3_SECRET_KEY and MUSCLE_S3_REGION in its environment (what
# tests/s3/s3_test_env.h reads), and MUSCLE_CEPH_DIR naming the cluster's
# directory, so that a test can stop and start radosgw under a running
# client (tools/ceph-rgw stop-rgw|start-rgw "$MUSCLE_CEPH_DIR"). The cluster
# is stopped and its directory removed afterwards, also when COMMAND fails;
# the exit status is COMMAND's.
# usage: tests/s3/with-rgw.sh COMMAND [ARGS...]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: tests/s3/with-rgw.sh COMMAND [ARGS...]" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/muscle-rgw.XXXXXX")
cleanup() {
  "$root/tools/ceph-rgw" stop "$dir" || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$root/tools/ceph-rgw" start "$dir"
set -a
# shellcheck disable=SC1091
. "$dir/env"
set +a
export MUSCLE_CEPH_DIR=$dir MUSCLE_CEPH_TOOL=$root/tools/ceph-rgw
rc=0
"$@" || rc=$?
exit $rc
