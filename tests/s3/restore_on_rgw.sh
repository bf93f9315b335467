#!/usr/bin/env bash
# Encryption at rest and rebuilding from the bucket, against the Ceph RGW
# that with-rgw.sh started (MUSCLE_S3_* in the environment):
#   musclefs init --encrypt on a bucket; a wrong passphrase is refused;
#   files written over 9P and a snapshot reach the bucket with the catalog;
#   the first site is gone: musclefs restore-from on a new base, with the
#   bucket and the key file alone, gives the same root hash and the same
#   bytes, read with ranged GETs, and check is clean; a key file added and
#   the first one removed; a byte flipped in a pack object in the bucket is
#   an I/O error for the client and a problem that check names.
# usage: tests/s3/with-rgw.sh tests/s3/restore_on_rgw.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: restore_on_rgw.sh BUILD_DIR}" && pwd)
: "${MUSCLE_S3_ENDPOINT:?run through tests/s3/with-rgw.sh}"
work=$(mktemp -d "${TMPDIR:-/tmp}/muscle-restore-rgw.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/log" ] && tail -20 "$work/log" >&2; exit 1; }
region=${MUSCLE_S3_REGION:-us-east-1}
s3() {  # s3 METHOD PATH [curl args...]: a signed request to the RGW
  local method=$1 path=$2
  shift 2
  curl -sf --aws-sigv4 "aws:amz:$region:s3" --user "$MUSCLE_S3_ACCESS_KEY:$MUSCLE_S3_SECRET_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X "$method" "$@" "$MUSCLE_S3_ENDPOINT/$path"
}
bucket=restore-$$-$RANDOM
s3 PUT "$bucket" > /dev/null || fail "create bucket $bucket"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$MUSCLE_S3_ACCESS_KEY" "$MUSCLE_S3_SECRET_KEY" > "$work/creds"
printf 'a passphrase of the test\n' > "$work/pass"
printf 'not the passphrase\n' > "$work/wrong"
chmod 600 "$work/creds" "$work/pass" "$work/wrong"
conf() {
  mkdir -p "$1" && chmod 700 "$1"
  cat > "$1/musclefs.conf" <<CONF
chunks = s3://$bucket/site
s3-endpoint = $MUSCLE_S3_ENDPOINT
s3-region = $region
s3-credentials = $work/creds
cache-size = 64M
passphrase-file = $work/pass
CONF
  chmod 600 "$1/musclefs.conf"
}
start() {
  local base=$1
  shift
  "$build/musclefs" serve --base "$base" "$@" > "$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -S "$base/musclefs.sock" ] && return 0; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  fail "server did not start"
}
stop() { kill "$pid"; wait "$pid" || true; pid=; }
field() { "$build/muscle" status --base "$1" | awk -v k="$2:" '$1 == k { print $2 }'; }
p9() { local base=$1; shift; "$build/tests/muscle9p" "unix:$base/musclefs.sock" "$@"; }

one=$work/one
conf "$one"
"$build/musclefs" init --encrypt --base "$one" > "$work/init" 2>&1 || { cat "$work/init"; fail "init --encrypt"; }
grep -q "encrypted at rest" "$work/init" || fail "init did not say encrypted: $(cat "$work/init")"
[ "$(stat -c %a "$one/store.key")" = 600 ] || fail "key file mode $(stat -c %a "$one/store.key")"
# A wrong passphrase: refused before anything is served.
if "$build/musclefs" serve --base "$one" --passphrase-file "$work/wrong" > "$work/log" 2>&1; then
  fail "served with a wrong passphrase"
fi
grep -q "wrong passphrase" "$work/log" || fail "no clear message for a wrong passphrase"

start "$one"
[ "$(field "$one" encryption)" = xchacha20-poly1305 ] || fail "status: $("$build/muscle" status --base "$one")"
head -c 40000000 /dev/urandom > "$work/big"
{ for i in $(seq 20000); do echo "line $i of a text anyone could guess"; done; } > "$work/text"
p9 "$one" put /big < "$work/big"
p9 "$one" mkdir /docs
p9 "$one" put /docs/text < "$work/text"
"$build/muscle" snapshot --base "$one" first > /dev/null || fail "snapshot"
for _ in $(seq 60); do
  [ "$(field "$one" not-uploaded-bytes)" = 0 ] && s3 HEAD "$bucket/site/catalog" -I > /dev/null 2>&1 && break
  sleep 0.5
done
s3 HEAD "$bucket/site/catalog" -I > /dev/null || fail "no catalog in the bucket after 30 s: $("$build/muscle" status --base "$one")"
stop
"$build/musclefs" check --base "$one" > "$work/check-one" 2>&1 || { cat "$work/check-one"; fail "check one"; }
root_one=$(awk '/^root hash/ { print $3 }' "$work/check-one")
# Nothing in the bucket is the text in clear.
s3 GET "$bucket" > "$work/listing"
grep -o '<Key>[^<]*</Key>' "$work/listing" | sed 's/<[^>]*>//g' > "$work/keys"
grep -q '^site/index/' "$work/keys" || fail "no index objects: $(cat "$work/keys")"
while read -r k; do s3 GET "$bucket/$k" -o "$work/obj"; grep -q "of a text anyone could guess" "$work/obj" && fail "$k holds plaintext"; done < "$work/keys"

# The first site is gone (its base deleted but for its key file).
cp "$one/store.key" "$work/key"
chmod 600 "$work/key"
rm -rf "$one"
two=$work/two
conf "$two"
if "$build/musclefs" restore-from --base "$two" > "$work/restore" 2>&1; then fail "restored without the key"; fi
grep -q "encrypted" "$work/restore" || fail "no clear message without the key: $(cat "$work/restore")"
rm -rf "$two" && conf "$two"
"$build/musclefs" restore-from --base "$two" --key-file "$work/key" > "$work/restore" 2>&1 ||
  { cat "$work/restore"; fail "restore-from"; }
root_two=$(awk '/^root hash/ { print $3 }' "$work/restore")
[ -n "$root_one" ] && [ "$root_one" = "$root_two" ] || fail "root hash $root_two after restore-from, $root_one before"
echo "key-file = $work/key" >> "$two/musclefs.conf"
rm -f "$two"/pack-cache/*.pack
start "$two"
p9 "$two" cat /big > "$work/big.back"
p9 "$two" cat /docs/text > "$work/text.back"
cmp "$work/big" "$work/big.back" || fail "big differs after restore-from"
cmp "$work/text" "$work/text.back" || fail "text differs after restore-from"
stop
"$build/musclefs" check --base "$two" > "$work/check-two" 2>&1 || { cat "$work/check-two"; fail "check after restore-from"; }

# Another key file for the same key; the first one removed with it.
printf 'another passphrase\n' > "$work/pass2" && chmod 600 "$work/pass2"
"$build/musclefs" key add "$work/key2" --base "$two" --new-passphrase-file "$work/pass2" > /dev/null || fail "key add"
"$build/musclefs" key remove "$work/key" --base "$two" --key-file "$work/key2" --passphrase-file "$work/pass2" \
  > /dev/null || fail "key remove"
[ ! -e "$work/key" ] || fail "key remove left the file"
sed -i "s|^key-file = .*|key-file = $work/key2|; s|^passphrase-file = .*|passphrase-file = $work/pass2|" "$two/musclefs.conf"

# A byte flipped in the biggest pack object of the bucket.
victim=$(grep '^site/packs/' "$work/keys" | while read -r k; do
  echo "$(s3 HEAD "$bucket/$k" -I | awk 'tolower($1) == "content-length:" { print $2 }' | tr -d '\r') $k"
done | sort -n | tail -1 | awk '{ print $2 }')
s3 GET "$bucket/$victim" -o "$work/victim"
printf '\xff' | dd of="$work/victim" bs=1 seek=1000000 conv=notrunc 2> /dev/null
s3 PUT "$bucket/$victim" --data-binary @"$work/victim" > /dev/null || fail "put the altered pack"
rm -f "$two"/pack-cache/*.pack
start "$two"
if p9 "$two" cat /big > /dev/null 2>&1; then fail "read an altered pack without an error"; fi
stop
grep -q "fails authentication" "$work/log" || fail "no log line about the altered pack"
if "$build/musclefs" check --base "$two" > "$work/check-bad" 2>&1; then fail "check passed an altered pack"; fi
grep -q "fails authentication" "$work/check-bad" || fail "check did not name the altered record"
echo "restore_on_rgw: ok"
