#!/usr/bin/env bash
# The Debian package, as an admin meets it: `cpack -G DEB` builds it; it
# installs with `apt install ./musclefs_*.deb` into a clean Debian 12
# (a debootstrap --variant=minbase root, made once and cached in
# $MUSCLE_CI_CACHE, default /var/cache/musclefs-ci); the postinst creates
# the user musclefs and /var/lib/musclefs; both binaries run there; the
# units pass `systemd-analyze verify`; and the units' own ExecStartPre and
# ExecStart command lines, run as their User= inside the root (there is
# no running systemd here), serve a 9P attach on the unix socket and a
# TLS client, reload keys on SIGHUP (ExecReload) and stop cleanly on
# SIGTERM. Then `apt remove` leaves the store in place.
# usage: deb_test.sh BUILD_DIR   (as root: chroot, mount)
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "deb_test.sh: must run as root (chroot)" >&2; exit 1; }
src=$(cd "$(dirname "$0")/../.." && pwd)
cache=${MUSCLE_CI_CACHE:-/var/cache/musclefs-ci}
work=$(mktemp -d /tmp/musclefs-deb-XXXXXX)
root=$work/root
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done; exit 1; }
pass() { echo "ok - $*"; }
t0=$SECONDS

# --- build the package ---
(cd "$build" && cpack -G DEB -B "$work/pkg" >"$work/cpack.log" 2>&1) || fail "cpack -G DEB"
deb=$(ls "$work"/pkg/musclefs_*_amd64.deb)
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libuv1 libmbedtls14 libmbedcrypto7 libsqlite3-0 libc6 adduser procps; do
  case ", $depends" in *", $lib"*) ;; *) fail "Depends lacks $lib: $depends";; esac
done
dpkg-deb -c "$deb" > "$work/contents"
grep -q ' ./usr/lib/systemd/system/musclefs@.service$' "$work/contents" || fail "no musclefs@.service in the package"
pass "cpack -G DEB: $(basename "$deb"), Depends: $depends"

# --- a clean Debian 12, made once ---
if [ ! -f "$cache/bookworm-minbase.tar" ]; then
  mkdir -p "$cache"
  rm -rf "$cache/root.tmp"
  debootstrap --variant=minbase bookworm "$cache/root.tmp" http://deb.debian.org/debian \
    >"$work/debootstrap.log" 2>&1 || fail "debootstrap"
  chroot "$cache/root.tmp" apt-get clean
  tar -C "$cache/root.tmp" -cf "$cache/bookworm-minbase.tar.tmp" .
  mv "$cache/bookworm-minbase.tar.tmp" "$cache/bookworm-minbase.tar"
  rm -rf "$cache/root.tmp"
fi
mkdir "$root"
tar -C "$root" -xf "$cache/bookworm-minbase.tar"
chroot "$root" dpkg-query -W musclefs >/dev/null 2>&1 && fail "the clean root already has musclefs"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
cp "$deb" "$root/tmp/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
in_root apt-get update -q >"$work/apt.log" 2>&1 || fail "apt-get update in the clean root"
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./tmp/$(basename "$deb")" \
  >>"$work/apt.log" 2>&1 || fail "apt install ./$(basename "$deb")"
pass "apt install ./$(basename "$deb") into a clean bookworm minbase root ($((SECONDS - t0)) s so far)"

in_root getent passwd musclefs | grep -q ':/var/lib/musclefs:/usr/sbin/nologin$' || fail "no system user musclefs"
[ "$(in_root stat -c '%U %a' /var/lib/musclefs)" = "musclefs 700" ] || fail "/var/lib/musclefs not musclefs 0700"
in_root musclefs --help >/dev/null || fail "musclefs does not run in the clean root"
in_root muscle --help >/dev/null || fail "muscle does not run in the clean root"
in_root man -w musclefs >/dev/null 2>&1 || [ -f "$root/usr/share/man/man8/musclefs.8" ] || fail "no musclefs(8)"
pass "postinst made the user musclefs and /var/lib/musclefs (0700); musclefs and muscle run"

# --- the units: systemd-analyze verify against the package's files ---
# (the clean root has no systemd: lend it the host's stock units, so
# After=/WantedBy= targets resolve, for this check only)
cp -rn /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
systemd-analyze verify --man=no --root="$root" musclefs.service musclefs@second.service \
  >"$work/verify.log" 2>&1 || fail "systemd-analyze verify: $(cat "$work/verify.log")"
[ ! -s "$work/verify.log" ] || fail "systemd-analyze verify warns: $(cat "$work/verify.log")"
# The check can fail: a binary that is not where the unit says, and a
# misspelt value (a warning), are both caught.
sed 's|^ExecStart=/usr/bin/musclefs |ExecStart=/usr/local/bin/musclefs |' \
  "$root/usr/lib/systemd/system/musclefs.service" > "$root/etc/systemd/system/broken.service"
systemd-analyze verify --man=no --root="$root" broken.service >/dev/null 2>&1 \
  && fail "systemd-analyze verify accepted a unit whose binary is missing"
sed 's/^ProtectSystem=strict/ProtectSystem=strictly/' "$root/usr/lib/systemd/system/musclefs.service" \
  > "$root/etc/systemd/system/broken.service"
[ -n "$(systemd-analyze verify --man=no --root="$root" broken.service 2>&1)" ] \
  || fail "systemd-analyze verify did not warn about ProtectSystem=strictly"
rm "$root/etc/systemd/system/broken.service"
pass "systemd-analyze verify: musclefs.service and musclefs@second.service (a broken copy is refused)"

# --- run the unit's command lines as the unit would ---
unit=$root/usr/lib/systemd/system/musclefs.service
field() { sed -n "s/^$1=//p" "$unit"; }
user=$(field User)
pre=$(field ExecStartPre)
start=$(field ExecStart)
reload=$(field ExecReload)
base=/var/lib/musclefs
[ "$user" = musclefs ] || fail "User=$user"
# chroot, env and sh exec one another: a background as_unit's $! is the
# server's pid (systemd's $MAINPID).
as_unit() { exec chroot --userspec="$user:$user" "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=$base sh -c "umask 077; exec $*"; }
tls_port=$((20000 + RANDOM % 12000))
(as_unit "muscle keys add ci-client --base $base") >"$work/keys.out" || fail "muscle keys add as musclefs"
grep '^ci-client:' "$work/keys.out" > "$work/client-keys"; chmod 600 "$work/client-keys"
printf 'listen = unix:%s/musclefs.sock\nlisten = tls://127.0.0.1:%s\naccess = guest read-only\n' \
  "$base" "$tls_port" > "$root$base/musclefs.conf"
chroot "$root" chown musclefs:musclefs "$base/musclefs.conf"
chmod 600 "$root$base/musclefs.conf"
(as_unit "$pre") >"$work/check.log" 2>&1 || fail "ExecStartPre ($pre) failed"
grep -q "configuration ok" "$work/check.log" || fail "--check-config did not say ok"
as_unit "$start" 2>"$work/server.log" &
pids+=($!); server=$!
for _ in $(seq 100); do [ -S "$root$base/musclefs.sock" ] && break; sleep 0.1; done
[ -S "$root$base/musclefs.sock" ] || fail "ExecStart ($start) did not serve"
[ "$(in_root stat -c '%U %a' $base/musclefs.sock)" = "musclefs 600" ] || fail "socket not musclefs 0600"
m9p=$work/muscle9p
# Every 9P client call is bounded: a broken transport fails, never hangs.
printf '#!/bin/sh\nexec timeout 30 %s "$@"\n' "$build/tests/muscle9p" > "$m9p"; chmod +x "$m9p"
echo "through the package" | "$m9p" "unix:$root$base/musclefs.sock" put /hello.txt || fail "9P put"
[ "$("$m9p" "unix:$root$base/musclefs.sock" cat /hello.txt)" = "through the package" ] || fail "9P cat"
timeout 60 "$build/muscle" bench --target "tls://127.0.0.1:$tls_port" --identity ci-client --keys "$work/client-keys" \
  --workload getattr --seconds 1 --quiet >/dev/null || fail "TLS client against the packaged server"
pass "ExecStart as User=$user: 9P attach, put and cat on the 0600 unix socket, a TLS-PSK client"

# ExecReload: /bin/kill -HUP $MAINPID
[ "$(tr -d ' \n' < "$root$base/musclefs.pid")" = "$server" ] || fail "pid file does not name the server"
in_root ${reload//\$MAINPID/$server} \
  || fail "ExecReload ($reload)"
for _ in $(seq 50); do grep -q "keys reloaded" "$work/server.log" && break; sleep 0.1; done
grep -q "keys reloaded from $base/keys: 1 identities" "$work/server.log" || fail "no reload after ExecReload"
grep -q ": connected$" "$work/server.log" || fail "no connection line in the log"
grep -q "TLS handshake ok: identity 'ci-client'" "$work/server.log" || fail "no handshake line in the log"
kill -TERM "$server"
set +e; wait "$server"; rc=$?; set -e
[ $rc = 0 ] || fail "SIGTERM: exit status $rc"
grep -q "stopped" "$work/server.log" || fail "no 'stopped' line"
pass "ExecReload reloads the keys; the log has connection and handshake lines; SIGTERM exits 0"

# musclefs@.service: the instance's base
iunit=$root/usr/lib/systemd/system/musclefs@.service
ipre=$(sed -n 's/^ExecStartPre=//p' "$iunit" | sed 's/%i/second/g')
mkdir -p "$root$base/second"; chroot "$root" chown musclefs:musclefs "$base/second"; chmod 700 "$root$base/second"
(as_unit "$ipre") >"$work/check2.log" 2>&1 || fail "musclefs@second ExecStartPre ($ipre)"
grep -q "listen: unix:$base/second/musclefs.sock" "$work/check2.log" || fail "instance base not used"
pass "musclefs@second: its own base $base/second"

in_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q musclefs >>"$work/apt.log" 2>&1 || fail "apt remove"
[ -f "$root$base/store.db" ] || fail "apt remove deleted the store"
pass "apt remove keeps the store ($((SECONDS - t0)) s in all)"
echo "deb tests passed"
