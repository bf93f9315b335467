#!/usr/bin/env bash
# The real Linux 9p client against musclefs: boots a Debian kernel under
# qemu (TCG), mounts the server with mount -t 9p, runs the workload in
# guest-init.sh, restarts the server, mounts again and verifies. The first
# two boots also mount with version=9p2000.u and version=9p2000 (natively,
# then through muscle relay's TLS) and check that files written through
# one dialect read the same through the others. Also lists
# and reads what the kernel wrote with diod's userspace tools (diodls,
# diodcat), an independent 9P2000.L client.
# Then snapshots: the host writes files, takes snapshots around an
# overwrite and a removal, and the guest mounts aname=@snapshots (natively,
# through muscle relay, as the read-only and the confined identity), reads
# the old versions and sees every change refused with EROFS.
#
# usage: kernel_mount_test.sh BUILD_DIR
# MUSCLE_VM_ONLY=snapshots runs only the snapshots phase, on a small tree
# of its own (the default runs every phase, as tools/test does).
# MUSCLE_VM_ONLY=reconnect runs only the --reconnect mount through the
# proxy that resets connections (tests/vm/cut_proxy.py) and the restart
# phase (a guest server stopped, killed and started under a --reconnect
# mount), in one boot.
# MUSCLE_VM_ONLY=ktls-halfclose runs only the kernel-TLS half-close check
# (part of the rules phase's kernel-TLS tests): one boot, the guest's own
# server, no server on the host.
# MUSCLE_VM_ONLY=s3, run through tests/s3/with-rgw.sh, runs the main workload
# once with the chunks in a Ceph RGW bucket and a 64M cache (evicting), the
# verify boot after a restart on an emptied cache (ranged GETs), then
# drains the uploads and checks the store from the bucket alone.
# Needs: qemu-system-x86, busybox-static, cpio, diod (tools/test installs
# them). The kernel and initramfs are cached under $MUSCLE_VM_CACHE
# (default ~/.cache/musclefs-vm), keyed by the kernel package version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
case "${MUSCLE_VM_ONLY:-}" in
  "" | snapshots | ktls-halfclose | reconnect) ;;
  s3) : "${MUSCLE_S3_ENDPOINT:?MUSCLE_VM_ONLY=s3: run through tests/s3/with-rgw.sh}" ;;
  *) echo "MUSCLE_VM_ONLY: only 'snapshots', 'ktls-halfclose', 'reconnect' or 's3' can run alone" >&2; exit 2 ;;
esac
cache=${MUSCLE_VM_CACHE:-$HOME/.cache/musclefs-vm}
mkdir -p "$cache"
work=$(mktemp -d /tmp/musclefs-vm-XXXXXX)
server_pid=
cleanup() {
  for p in "${relay_pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- kernel: the package linux-image-amd64 currently depends on ---
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$kpkg" ] || { echo "cannot resolve the Debian kernel package" >&2; exit 1; }
kdir=$cache/$kpkg
if [ ! -f "$kdir/done" ]; then
  rm -rf "$kdir" && mkdir -p "$kdir"
  (cd "$kdir" && apt-get download "$kpkg" >/dev/null && dpkg -x ./*.deb root && rm -f ./*.deb)
  touch "$kdir/done"
fi
vmlinuz=$(ls "$kdir"/root/boot/vmlinuz-* | head -1)
moddir=$(ls -d "$kdir"/root/lib/modules/* | head -1)/kernel

# --- initramfs ---
mods="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci net/core/failover
drivers/net/net_failover drivers/net/virtio_net net/9p/9pnet net/9p/9pnet_fd
fs/netfs/netfs fs/fscache/fscache fs/9p/9p"
root=$work/initrd
mkdir -p "$root"/{bin,sbin,mods,proc,sys,dev,mnt,tmp}
cp /bin/busybox "$root/bin/busybox"
for app in $("$root/bin/busybox" --list); do [ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"; done
for m in $mods; do
  f=$moddir/$m.ko
  [ -f "$f" ] || f=$(ls "$moddir/$m.ko"* 2>/dev/null | head -1)
  [ -f "$f" ] || { echo "module $m missing from $kpkg" >&2; exit 1; }
  case "$f" in
    *.xz) xz -dc "$f" > "$root/mods/$(basename "$m").ko" ;;
    *.zst) zstd -qdc "$f" > "$root/mods/$(basename "$m").ko" ;;
    *) cp "$f" "$root/mods/$(basename "$m").ko" ;;
  esac
  basename "$m" >> "$root/mods/order"
done
# Kernel TLS: tls.ko and the ChaCha20-Poly1305 AEAD it allocates go in,
# but are loaded only by the phase that tests them, after the fallback (no
# tls module) was seen.
mkdir -p "$root/mods/ktls"
for m in lib/crypto/libchacha crypto/chacha_generic lib/crypto/libpoly1305 \
         crypto/poly1305_generic crypto/chacha20poly1305 net/tls/tls; do
  f=$(ls "$moddir/$m.ko"* 2>/dev/null | head -1)
  [ -f "$f" ] || { echo "module $m missing from $kpkg" >&2; exit 1; }
  case "$f" in
    *.xz) xz -dc "$f" > "$root/mods/ktls/$(basename "$m").ko" ;;
    *.zst) zstd -qdc "$f" > "$root/mods/ktls/$(basename "$m").ko" ;;
    *) cp "$f" "$root/mods/ktls/$(basename "$m").ko" ;;
  esac
  basename "$m" >> "$root/mods/ktls/order"
done
gcc -static -O2 -o "$root/vmtool" "$here/vmtool.c"
gcc -static -O2 -o "$root/fsx" "$here/fsx.c"
gcc -static -O2 -o "$root/fsstress" "$here/fsstress.c"
# muscle (for muscle mount inside the guest), musclefs (a server inside
# the guest, on kernel TLS) and the half-close probe (a client of that
# server) with the shared libraries they use.
for bin in muscle musclefs tests/ktls_halfclose_probe; do
  cp "$build/$bin" "$root/$(basename "$bin")"
  for lib in $(ldd "$build/$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
mkdir -p "$root/lib64" "$root/etc"
echo "guest:$(printf 'g%.0s' $(seq 32))" > "$root/keys"
chmod 600 "$root/keys"
cp "$here/guest-init.sh" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$work/initrd.gz"

# Below the ephemeral range (32768+), so no outgoing connection holds it.
port=$((20000 + RANDOM % 12000))
tls_port=$((port + 1)); relay_port=$((port + 2)); ro_port=$((port + 3)); conf_port=$((port + 4))
cut_port=$((port + 5))
store=$work/store.db
# Server-side keys and access rules for the TLS runs.
mkdir -p "$work/srv"
{
  cat "$root/keys"
  echo "reader:$(printf 'r%.0s' $(seq 32))"
  echo "confined:$(printf 'c%.0s' $(seq 32))"
} > "$work/srv/keys"
chmod 600 "$work/srv/keys"
# guest is the test's trusted client: its root stays root (the POSIX
# workload chowns and makes devices); confined keeps the defaults, root
# squashed and no devices or set-id files (checked in the rules phase).
printf 'access = reader read-only\naccess = confined root=/deep/a\naccess = guest snapshot no-root-squash setid devices\n' \
  > "$work/srv/musclefs.conf"
chmod 644 "$work/srv/musclefs.conf"  # musclefs refuses a group/world-writable one
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on $1" >&2; cat "$work/server.log" >&2; exit 1
}
start_server() {
  # (the unix socket: muscle snapshot talks to the server there, as admin)
  "$build/musclefs" serve --store "$store" --listen "tcp://127.0.0.1:$port" \
    --listen "tls://127.0.0.1:$tls_port" --listen "unix:$work/srv/musclefs.sock" \
    --base "$work/srv" 2>>"$work/server.log" &
  server_pid=$!
  wait_port "$port"
}
relay_pids=()
start_relay() {  # identity local-port
  "$build/muscle" relay --keys "$work/srv/keys" --identity "$1" \
    --connect "127.0.0.1:$tls_port" --listen "127.0.0.1:$2" 2>>"$work/relay.log" &
  relay_pids+=($!)
  wait_port "$2"
}
stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" || { echo "server exited with $?" >&2; exit 1; }
  server_pid=
}
run_guest() {  # phase trans port marker timeout [more kernel arguments]
  local phase=$1 trans=$2 gport=$3 marker=$4 t0=$SECONDS log=$work/guest-$1-$2.log
  timeout "$5" qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot \
    -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet muscle.phase=$phase muscle.port=$gport muscle.trans=$trans muscle.roport=$ro_port muscle.confport=$conf_port muscle.relayport=$relay_port ${6:-}" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 > "$log" 2>&1 || true
  grep -a "MUSCLE-" "$log" | tr -d '\r' || true
  if ! grep -aq "$marker" "$log"; then
    echo "FAIL: guest phase $phase over $trans did not reach $marker; console:" >&2
    tail -n 40 "$log" >&2
    echo "--- server log:" >&2; tail -n 20 "$work/server.log" >&2
    [ -f "$work/relay.log" ] && { echo "--- relay log:" >&2; tail -n 20 "$work/relay.log" >&2; }
    exit 1
  fi
  echo "phase $phase over $trans passed in $((SECONDS - t0)) s"
}

# Snapshots: files written through the server (muscle9p on the plain
# port), snapshot "before", snap/over overwritten and snap/gone removed,
# snapshot "after", snap/third written, an unnamed snapshot (named by its
# time). The guest gets the expected hashes on its command line.
snapshots_phase() {
  local d=$work/snapdata m9="$build/tests/muscle9p" ep="127.0.0.1:$port" out hash third confhash
  mkdir -p "$d"
  head -c 3000000 /dev/urandom > "$d/over-old"
  head -c 200000 /dev/urandom > "$d/over-new"
  head -c 100000 /dev/urandom > "$d/gone"
  echo kept > "$d/keep"
  "$m9" "$ep" mkdir snap
  "$m9" "$ep" stat deep >/dev/null 2>&1 || "$m9" "$ep" mkdir deep
  "$m9" "$ep" stat deep/a >/dev/null 2>&1 || "$m9" "$ep" mkdir deep/a
  "$m9" "$ep" put snap/over < "$d/over-old"
  "$m9" "$ep" put snap/gone < "$d/gone"
  "$m9" "$ep" put snap/keep < "$d/keep"
  echo confined-old | "$m9" "$ep" put deep/a/snapfile
  snap() { "$build/muscle" "$@" --base "$work/srv"; }
  out=$(snap snapshot before) || { echo "FAIL: muscle snapshot before: $out" >&2; exit 1; }
  echo "$out"
  hash=$(echo "$out" | sed -n 's/.*: root \([0-9a-f]*\),.*/\1/p' | cut -c1-8)
  [ ${#hash} = 8 ] || { echo "FAIL: no root hash in: $out" >&2; exit 1; }
  "$m9" "$ep" put snap/over < "$d/over-new"
  "$m9" "$ep" rm snap/gone
  echo confined-new | "$m9" "$ep" put deep/a/snapfile
  out=$(snap snapshot after) || { echo "FAIL: muscle snapshot after: $out" >&2; exit 1; }
  echo "$out"
  "$m9" "$ep" put snap/third < "$d/keep"
  out=$(snap snapshot) || { echo "FAIL: muscle snapshot: $out" >&2; exit 1; }
  echo "$out"
  third=$(echo "$out" | sed -n 's/^snapshot \([^ ]*\) taken.*/\1/p')
  snap snapshots
  out=$(snap diff before after)
  echo "$out"
  echo "$out" | grep -qx "M snap/over" && echo "$out" | grep -qx -- "- snap/gone" \
    || { echo "FAIL: muscle diff before after: $out" >&2; exit 1; }
  snap history snap/over
  # What muscle snapshots shows the confined identity: its subtree's hash.
  out=$("$build/muscle" snapshots --connect "127.0.0.1:$tls_port" --identity confined --keys "$work/srv/keys") \
    || { echo "FAIL: muscle snapshots as the confined identity: $out" >&2; exit 1; }
  echo "$out"
  confhash=$(echo "$out" | awk '$1 == "before" { print substr($3, 1, 8) }')
  sha() { sha256sum < "$1" | cut -d' ' -f1; }
  run_guest snapshots tcp "$port" MUSCLE-SNAP-OK 900 \
    "muscle.old=$(sha "$d/over-old") muscle.new=$(sha "$d/over-new") muscle.gone=$(sha "$d/gone") \
muscle.oldpart=$(dd if="$d/over-old" bs=4096 skip=500 count=3 2>/dev/null | sha256sum | cut -d' ' -f1) \
muscle.hash=$hash muscle.third=$third muscle.confhash=$confhash muscle.tlsport=$tls_port"
  grep -q "attach by identity confined .*aname=\"@snapshots\"" "$work/server.log" \
    || { echo "FAIL: no @snapshots attach by the confined identity logged" >&2; exit 1; }
  out=$(snap snapshots)
  echo "$out"
  [ "$(echo "$out" | awk 'NR > 1 { print $1 }')" = from-guest ] \
    || { echo "FAIL: want only the snapshot from-guest after the guest's prune" >&2; exit 1; }
}

# The main workload with the chunks in a bucket on the Ceph RGW that
# tests/s3/with-rgw.sh started (MUSCLE_S3_* in the environment). The cache
# holds 64M of uploaded packs, so packs are evicted during the workload and
# read back with ranged GETs; the server restarts on an emptied cache (only
# the open pack is fetched back), so the verify boot reads from the bucket;
# then the uploads drain, and check, on an emptied cache again, re-hashes
# every chunk from the bucket.
s3_phase() {
  local base=$work/srv bucket=vm-$$-$RANDOM region=${MUSCLE_S3_REGION:-us-east-1} out n
  s3_status() { "$build/muscle" status --base "$base"; }
  field() { s3_status | awk -v k="$1:" '$1 == k { print $2 }'; }
  # Full packs upload at once, the open one ~10 s after its last write.
  drain() {
    local t0=$SECONDS
    for _ in $(seq 120); do [ "$(field not-uploaded-bytes)" = 0 ] && break; sleep 0.5; done
    out=$(s3_status)
    echo "$out" | awk '$1 == "not-uploaded-bytes:" && $2 == 0 { ok = 1 } END { exit !ok }' \
      || { echo "FAIL: not everything uploaded 60 s $1: $out" >&2; tail -n 20 "$work/server.log" >&2; exit 1; }
    echo "$out" | awk '$1 == "last-error:" && $2 == "-" { ok = 1 } END { exit !ok }' \
      || { echo "FAIL: an upload error $1: $out" >&2; exit 1; }
    echo "drained $1 in $((SECONDS - t0)) s: $(echo "$out" | awk '/^(uploaded|cached|upload-failures)/ { printf "%s ", $0 }')"
  }
  curl -sf --aws-sigv4 "aws:amz:$region:s3" --user "$MUSCLE_S3_ACCESS_KEY:$MUSCLE_S3_SECRET_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT "$MUSCLE_S3_ENDPOINT/$bucket" > /dev/null \
    || { echo "FAIL: cannot create bucket $bucket at $MUSCLE_S3_ENDPOINT" >&2; exit 1; }
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$MUSCLE_S3_ACCESS_KEY" "$MUSCLE_S3_SECRET_KEY" > "$work/s3-credentials"
  chmod 600 "$work/s3-credentials"
  printf 'chunks = s3://%s/vm\ns3-endpoint = %s\ns3-region = %s\ns3-credentials = %s\ncache-size = 64M\n' \
    "$bucket" "$MUSCLE_S3_ENDPOINT" "$region" "$work/s3-credentials" >> "$base/musclefs.conf"
  # The store in the base, so that its cache is $base/pack-cache and
  # check and status find it by --base.
  store=$base/store.db
  # Encrypted at rest, with an unattended key file ($base/store.key, which
  # serve finds by itself).
  "$build/musclefs" init --encrypt --unattended --base "$base" --store "$store" \
    || { echo "FAIL: musclefs init --encrypt on the bucket" >&2; exit 1; }
  start_server
  [ "$(field chunks)" = "s3://$bucket/vm" ] || { echo "FAIL: chunks not on the bucket: $(s3_status)" >&2; exit 1; }
  [ "$(field encryption)" = xchacha20-poly1305 ] || { echo "FAIL: not encrypted: $(s3_status)" >&2; exit 1; }
  run_guest write tcp "$port" MUSCLE-WRITE-OK 900
  drain "after the write boot"
  # Every pack started in the cache: uploaded bytes beyond the cached ones
  # were evicted.
  [ "$(field uploaded-bytes)" -gt "$(field cached-bytes)" ] \
    || { echo "FAIL: nothing evicted from the 64M cache: $(s3_status)" >&2; exit 1; }
  stop_server
  n=$(find "$base/pack-cache" -name '*.pack' | wc -l)
  rm -f "$base"/pack-cache/*.pack
  start_server
  echo "restarted on an emptied cache ($n packs removed; $(find "$base/pack-cache" -name '*.pack' | wc -l) fetched back)"
  run_guest verify tcp "$port" MUSCLE-VERIFY-OK 600
  # A snapshot, so that the bucket's catalog holds the whole tree.
  "$build/muscle" snapshot --base "$base" after-verify > /dev/null \
    || { echo "FAIL: muscle snapshot on the S3 store" >&2; exit 1; }
  drain "after the verify boot"
  for _ in $(seq 60); do
    s3_catalog=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:$region:s3" \
      --user "$MUSCLE_S3_ACCESS_KEY:$MUSCLE_S3_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -I \
      "$MUSCLE_S3_ENDPOINT/$bucket/vm/catalog")
    [ "$s3_catalog" = 200 ] && break
    sleep 0.5
  done
  [ "$s3_catalog" = 200 ] || { echo "FAIL: no catalog in the bucket after the snapshot" >&2; exit 1; }
  stop_server
  rm -f "$base"/pack-cache/*.pack
  out=$("$build/musclefs" check --base "$base" 2>&1) || true
  echo "$out" | tail -5
  echo "$out" | tail -1 | grep -qx ok || { echo "FAIL: store check from the bucket: $out" >&2; exit 1; }
  # The server is lost: a new base rebuilt from the bucket and the key file
  # alone holds the same tree (same root hash) and the same bytes. (Not the
  # verify boot: snapshots keep no hard links and no xattrs, which it checks.)
  local root_before root_after
  root_before=$(echo "$out" | awk '/^root hash/ { print $3 }')
  mkdir -m 700 "$work/srv2"
  grep -v '^store' "$base/musclefs.conf" > "$work/srv2/musclefs.conf"
  chmod 600 "$work/srv2/musclefs.conf"
  cp "$base/store.key" "$work/srv2/store.key"
  out=$("$build/musclefs" restore-from --base "$work/srv2" 2>&1) \
    || { echo "FAIL: restore-from: $out" >&2; exit 1; }
  echo "$out"
  root_after=$(echo "$out" | awk '/^root hash/ { print $3 }')
  [ -n "$root_before" ] && [ "$root_before" = "$root_after" ] \
    || { echo "FAIL: root hash $root_after after restore-from, $root_before before" >&2; exit 1; }
  "$build/musclefs" serve --base "$work/srv2" --listen "tcp://127.0.0.1:$port" 2>>"$work/server.log" &
  server_pid=$!
  wait_port "$port"
  local sha want
  sha=$("$build/tests/muscle9p" "tcp://127.0.0.1:$port" cat /big | sha256sum)
  want=$("$build/tests/muscle9p" "tcp://127.0.0.1:$port" cat /big.sha256)
  [ "$sha" = "$want" ] || { echo "FAIL: big after restore-from: $sha, want $want" >&2; exit 1; }
  echo "restore-from: same root hash $root_after, big reads back"
  stop_server
}
if [ "${MUSCLE_VM_ONLY:-}" = s3 ]; then
  s3_phase
  echo "kernel mount test with the chunks on S3 passed"
  exit 0
fi

if [ "${MUSCLE_VM_ONLY:-}" = ktls-halfclose ]; then
  run_guest ktls-halfclose none 0 MUSCLE-KTLS-HALFCLOSE-DONE 300
  echo "kernel-TLS half-close test passed"
  exit 0
fi
if [ "${MUSCLE_VM_ONLY:-}" = reconnect ]; then
  start_server
  python3 "$here/cut_proxy.py" "$cut_port" "$tls_port" 2 > "$work/cut_proxy.log" 2>&1 &
  cut_pid=$!
  run_guest reconnect none 0 MUSCLE-RESTART-OK 600 "muscle.cutport=$cut_port"
  kill "$cut_pid"
  echo "cut proxy: $(grep -c '^cut [1-9]' "$work/cut_proxy.log") cuts with connections reset"
  stop_server
  echo "reconnect test passed"
  exit 0
fi
if [ -n "${MUSCLE_VM_ONLY:-}" ]; then
  start_server
  start_relay guest "$relay_port"
  start_relay reader "$ro_port"
  start_relay confined "$conf_port"
else
  start_server
  run_guest write tcp "$port" MUSCLE-WRITE-OK 900

  # diod's tools as a second, independent client.
  listing=$(diodls -s "127.0.0.1:$port" -a / -l 2>&1) || { echo "FAIL: diodls: $listing" >&2; exit 1; }
  echo "$listing" | grep -q "big" || { echo "FAIL: diodls does not list big: $listing" >&2; exit 1; }
  diod_sha=$(diodcat -s "127.0.0.1:$port" -a / big | sha256sum)
  [ "$diod_sha" = "$(diodcat -s "127.0.0.1:$port" -a / big.sha256)" ] \
    || { echo "FAIL: diodcat read of big differs: $diod_sha" >&2; exit 1; }
  echo "diodls/diodcat: listed and read what the kernel wrote"

  stop_server
  "$build/musclefs" check --store "$store" | tail -2
  start_server
  # After the restart: verify through muscle relay (TLS), then through
  # muscle mount inside the guest (trans=fd over a socketpair, TLS outside),
  # with the access rules checked through two more relays.
  start_relay guest "$relay_port"
  run_guest verify tcp "$relay_port" MUSCLE-VERIFY-OK 600
  start_relay reader "$ro_port"
  start_relay confined "$conf_port"
  # The reconnect phase's flaky network: resets busy connections every 2 s.
  python3 "$here/cut_proxy.py" "$cut_port" "$tls_port" 2 > "$work/cut_proxy.log" 2>&1 &
  cut_pid=$!
  run_guest rules fd "$tls_port" MUSCLE-KTLS-OK 600 "muscle.cutport=$cut_port"
  kill "$cut_pid"
  grep -aq MUSCLE-RECONNECT-OK "$work"/guest-rules-fd.log || { echo "FAIL: reconnect phase incomplete" >&2; exit 1; }
  grep -a MUSCLE-RECONNECT-OK "$work"/guest-rules-fd.log
  grep -aq MUSCLE-RESTART-OK "$work"/guest-rules-fd.log || { echo "FAIL: restart phase incomplete" >&2; exit 1; }
  echo "cut proxy: $(grep -c '^cut [1-9]' "$work/cut_proxy.log") cuts with connections reset"
  grep -aq MUSCLE-RULES-OK "$work"/guest-rules-fd.log || { echo "FAIL: rules phase incomplete" >&2; exit 1; }
  grep -q "attach by identity reader" "$work/server.log" || { echo "FAIL: no attach by reader logged" >&2; exit 1; }
  # The guest's kernel-TLS mount of this server (userspace records here,
  # the kernel's on the other end) completed a handshake.
  grep -q "identity 'guest' suite TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256.* records userspace" \
    "$work/server.log" || { echo "FAIL: no userspace-records handshake logged" >&2; exit 1; }
fi
snapshots_phase
for p in "${relay_pids[@]}"; do kill "$p"; done
stop_server
# (after the snapshots too: check re-hashes every tree object)
check_out=$("$build/musclefs" check --store "$store") || true
echo "$check_out" | tail -2
echo "$check_out" | tail -1 | grep -qx ok || { echo "FAIL: store check" >&2; exit 1; }
echo "kernel mount test passed"
