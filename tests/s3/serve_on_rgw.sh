#!/usr/bin/env bash
# musclefs serve --chunks s3://... against the Ceph RGW that with-rgw.sh
# started (MUSCLE_S3_* in the environment): files written over 9P reach the
# bucket (muscle status says so), survive a restart with an empty cache
# (read back with ranged GETs), a store refuses another chunks setting, and
# bad settings are refused with a clear message before anything starts.
# usage: tests/s3/with-rgw.sh tests/s3/serve_on_rgw.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: serve_on_rgw.sh BUILD_DIR}" && pwd)
: "${MUSCLE_S3_ENDPOINT:?run through tests/s3/with-rgw.sh}"
work=$(mktemp -d "${TMPDIR:-/tmp}/muscle-serve-rgw.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/log" ] && tail -20 "$work/log" >&2; exit 1; }

bucket=serve-$$-$RANDOM
curl -sf --aws-sigv4 "aws:amz:${MUSCLE_S3_REGION:-us-east-1}:s3" \
  --user "$MUSCLE_S3_ACCESS_KEY:$MUSCLE_S3_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
  -X PUT "$MUSCLE_S3_ENDPOINT/$bucket" > /dev/null || fail "create bucket $bucket"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$MUSCLE_S3_ACCESS_KEY" "$MUSCLE_S3_SECRET_KEY" > "$work/creds"
chmod 600 "$work/creds"
base=$work/base
sock=$base/musclefs.sock
# The config file carries the bucket; credentials come from the file.
mkdir -p "$base" && chmod 700 "$base"
cat > "$base/musclefs.conf" <<CONF
chunks = s3://$bucket/site
s3-endpoint = $MUSCLE_S3_ENDPOINT
s3-region = ${MUSCLE_S3_REGION:-us-east-1}
s3-credentials = $work/creds
cache-size = 64M
CONF
chmod 600 "$base/musclefs.conf"

start() {
  "$build/musclefs" serve --base "$base" "$@" > "$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -S "$sock" ] && return 0; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  fail "server did not start"
}
stop() { kill "$pid"; wait "$pid" || true; pid=; }
status() { "$build/muscle" status --base "$base"; }
field() { status | awk -v k="$1:" '$1 == k { print $2 }'; }

start
head -c 80000000 /dev/urandom > "$work/big"      # 2 full packs and an open one
head -c 5000 /dev/urandom > "$work/small"
"$build/tests/muscle9p" "unix:$sock" put /big < "$work/big"
"$build/tests/muscle9p" "unix:$sock" put /small < "$work/small"
[ "$(field chunks)" = "s3://$bucket/site" ] || fail "status chunks: $(status)"
# Full packs upload at once, the open one ~10 s after its last write.
for _ in $(seq 60); do
  [ "$(field not-uploaded-bytes)" = 0 ] && [ "$(field uploaded-packs)" -ge 3 ] && break
  sleep 0.5
done
[ "$(field not-uploaded-bytes)" = 0 ] || fail "not everything uploaded after 30 s: $(status)"
[ "$(field last-error)" = - ] || fail "an upload error: $(status)"
if grep -q "$MUSCLE_S3_SECRET_KEY" "$work/log"; then fail "the secret key is in the log"; fi
stop

# An empty cache: every read is a ranged GET from the bucket.
rm -f "$base"/pack-cache/*.pack
start
"$build/tests/muscle9p" "unix:$sock" cat /big > "$work/big.back"
"$build/tests/muscle9p" "unix:$sock" cat /small > "$work/small.back"
cmp "$work/big" "$work/big.back" || fail "big differs after a restart on an empty cache"
cmp "$work/small" "$work/small.back" || fail "small differs after a restart on an empty cache"
stop
"$build/musclefs" check --base "$base" > "$work/check" 2>&1 || { cat "$work/check" >&2; fail "check"; }

# The store remembers where its chunks are.
if "$build/musclefs" serve --base "$base" --chunks local > "$work/log" 2>&1; then
  fail "served a bucket store with --chunks local"
fi
grep -q "keeps its chunk data in s3://$bucket/site" "$work/log" || fail "no clear refusal"
# Bad settings, refused before anything starts.
for bad in "--chunks s3://Bad_Bucket" "--cache-size 12Q" "--s3-addressing sideways"; do
  # shellcheck disable=SC2086
  if "$build/musclefs" serve --base "$base" $bad > "$work/log" 2>&1; then fail "accepted $bad"; fi
done
chmod 644 "$work/creds"
if "$build/musclefs" serve --base "$base" > "$work/log" 2>&1; then fail "used a readable credentials file"; fi
grep -q "credentials" "$work/log" || fail "no message about the credentials file"
echo "serve_on_rgw: ok"
