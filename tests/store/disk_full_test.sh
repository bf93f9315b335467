#!/usr/bin/env bash
# A full disk, for real: the server's base on a 64 MiB tmpfs that another
# program fills to the last byte. Deletes through 9P must still succeed and
# stay deleted after a restart, writes must fail with ENOSPC before they are
# acknowledged (never succeed and then vanish), the server must log the
# condition, keep answering, and accept writes again by itself once deletes
# have made room. Runs in a private mount namespace (unshare -rm), so it
# needs no root outside it.
#   tests/store/disk_full_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "${1:-build}")
if [ -z "${MUSCLE_DISK_FULL_NS:-}" ]; then
  exec env MUSCLE_DISK_FULL_NS=1 unshare -rm "$0" "$build"
fi
mnt=$(mktemp -d /tmp/musclefs-full-XXXXXX)
mount -t tmpfs -o size=64m tmpfs "$mnt"
base=$mnt/base
mkdir "$base"
log=$mnt/../musclefs-full-$$.log
sock=$base/test.sock
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  umount "$mnt" 2>/dev/null || true
  rmdir "$mnt" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT
fail() { echo "disk_full_test: FAIL: $*" >&2; echo "--- server log:" >&2; cat "$log" >&2; exit 1; }
p9() { "$build/tests/muscle9p" "unix:$sock" "$@"; }
commit_ms=200
start() {
  "$build/musclefs" serve --base "$base" --listen "unix:$sock" --commit-interval-ms "$commit_ms" >>"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -S "$sock" ] && p9 stat / >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "server did not start"
}
stop() { kill -TERM "$pid"; wait "$pid" || fail "server exited with $?"; pid=; }

start
for i in 1 2 3 4; do
  head -c $((4 << 20)) /dev/urandom | p9 put "/f$i" || fail "put /f$i with room to spare"
done
sum3=$(p9 cat /f3 | md5sum)

# Someone else fills the disk.
dd if=/dev/zero of="$mnt/filler" bs=1M 2>/dev/null || true
[ "$(df --output=avail "$mnt" | tail -1)" -lt 1024 ] || fail "the disk did not fill"

# Writes go on until the disk is really full: each either succeeds (and
# must then survive) or fails with ENOSPC; none is acknowledged and lost.
declare -A sums
refused=0
for i in $(seq 1 20); do
  head -c $((2 << 20)) /dev/urandom >"$mnt/../data-$$"
  if p9 put "/w$i" <"$mnt/../data-$$" 2>"$mnt/../put-$$.err"; then
    sums[w$i]=$(md5sum <"$mnt/../data-$$")
  else
    grep -q "No space left" "$mnt/../put-$$.err" || { cat "$mnt/../put-$$.err"; fail "write /w$i failed, but not with ENOSPC"; }
    refused=1
    p9 rm "/w$i" 2>/dev/null || true
    break
  fi
done
rm -f "$mnt/../put-$$.err" "$mnt/../data-$$"
[ "$refused" = 1 ] || fail "40 MiB written to a full 64 MiB disk"
p9 stat / >/dev/null || fail "attach/stat fails on a full disk"
p9 ls / >/dev/null || fail "readdir fails on a full disk"

# Deletes succeed and stay deleted.
for i in 1 2 4; do p9 rm "/f$i" || fail "rm /f$i on a full disk"; done
p9 rm /big 2>/dev/null || true
sleep 1
stop
start
names=$(p9 ls / | grep -v '^\.\.\?$' | sort | tr '\n' ' ')
expect=$(printf '%s\n' f3 "${!sums[@]}" | sort | tr '\n' ' ')
[ "$names" = "$expect" ] || fail "after restart the root holds '$names', expected '$expect'"
[ "$(p9 cat /f3 | md5sum)" = "$sum3" ] || fail "f3 changed"
for w in "${!sums[@]}"; do
  [ "$(p9 cat "/$w" | md5sum)" = "${sums[$w]}" ] || fail "acknowledged write /$w lost or changed"
done
grep -q "disk full (ENOSPC)\|disk nearly full" "$log" || fail "the full disk was not logged"

# The space the deletes freed is writable again, with the filler still there.
ok=0
for _ in $(seq 50); do
  if head -c $((1 << 20)) /dev/urandom | p9 put /after 2>/dev/null; then ok=1; break; fi
  sleep 0.2
done
[ "$ok" = 1 ] || fail "no write accepted after deletes freed 12 MiB"
rm -f "$mnt/filler"
head -c $((4 << 20)) /dev/urandom | p9 put /more || fail "write after the disk was freed"
stop

# With a long commit interval, a delete on a full disk gives its space back
# at once (it commits then), not at the end of the interval.
commit_ms=60000
start
head -c $((8 << 20)) /dev/urandom | p9 put /freed-soon || fail "put /freed-soon"
p9 rm /more
dd if=/dev/zero of="$mnt/filler" bs=1M 2>/dev/null || true
head -c $((1 << 20)) /dev/urandom | p9 put /refused 2>/dev/null && fail "a write on a full disk succeeded"
before=$(df --output=avail "$mnt" | tail -1)
p9 rm /freed-soon || fail "rm /freed-soon on a full disk"
sleep 1
after=$(df --output=avail "$mnt" | tail -1)
[ $((after - before)) -ge 4096 ] || fail "a delete of 8 MiB on a full disk freed $((after - before)) KiB within 1 s (expected at least 4 MiB; commit interval 60 s)"
stop
"$build/musclefs" check --base "$base" >>"$log" 2>&1 || fail "musclefs check after the run"
[ -n "${MUSCLE_TEST_VERBOSE:-}" ] && cat "$log"
echo "disk_full_test: ok"
