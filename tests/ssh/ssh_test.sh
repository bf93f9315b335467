#!/usr/bin/env bash
# SSH as a transport, against Debian's real sshd on a loopback port: the
# project's client (muscle9p, muscle bench) and diod's diodls/diodcat reach
# musclefs through `ssh HOST muscle stdio` (a local unix socket forwards to
# ssh, as a user would with socat), half-close through ssh, and keys pinned
# by `restrict,command="muscle stdio --identity NAME"` lines: the remote
# command a client asks for is ignored, the identity's read-only and
# subtree rules hold whatever the client sends, and the key cannot forward
# the server's socket itself.
# usage: ssh_test.sh BUILD_DIR   (as root: sshd needs it)
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "ssh_test.sh: must run as root (sshd)" >&2; exit 1; }
work=$(mktemp -d /tmp/musclefs-ssh-XXXXXX)
chmod 700 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done; exit 1; }
pass() { echo "ok - $*"; }
muscle=$build/muscle m9p=$work/muscle9p
# Every 9P client call is bounded: a broken transport fails, never hangs.
printf '#!/bin/sh\nexec timeout 30 %s "$@"\n' "$build/tests/muscle9p" > "$m9p"; chmod +x "$m9p"
base=$work/base
mkdir -p "$base"

# --- the server, with access rules for two SSH identities ---
printf 'access = reader read-only\naccess = proj root=/projects/x\n' > "$base/musclefs.conf"
chmod 600 "$base/musclefs.conf"
"$build/musclefs" serve --base "$base" 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$base/musclefs.sock" ] && break; sleep 0.1; done
[ -S "$base/musclefs.sock" ] || fail "server did not start"
direct=unix:$base/musclefs.sock
echo top-secret | "$m9p" "$direct" put /top.txt
"$m9p" "$direct" mkdir /projects; "$m9p" "$direct" mkdir /projects/x
echo inside-x | "$m9p" "$direct" put /projects/x/file.txt

# --- sshd on loopback with its own host key and config ---
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
for k in full reader proj; do ssh-keygen -q -t ed25519 -N '' -f "$work/$k"; done
{
  echo "$(cat "$work/full.pub")"
  echo "restrict,command=\"$muscle stdio --base $base --identity reader\" $(cat "$work/reader.pub")"
  echo "restrict,command=\"$muscle stdio --base $base --identity proj\" $(cat "$work/proj.pub")"
} > "$work/authorized_keys"
chmod 600 "$work/authorized_keys"
port=$((20000 + RANDOM % 12000))
cat > "$work/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
CONF
mkdir -p /run/sshd
/usr/sbin/sshd -t -f "$work/sshd_config" || fail "sshd rejects the test config"
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host_key.pub")" > "$work/known_hosts"
sshc() {  # sshc KEY [ssh args...]
  local key=$1; shift
  ssh -F /dev/null -i "$work/$key" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$work/known_hosts" -o LogLevel=ERROR "$@"
}
sshc full root@127.0.0.1 true || fail "cannot log in to the test sshd"
pass "sshd on 127.0.0.1:$port with a generated host key and user keys"

# A local unix socket per key that forwards each connection to ssh.
forward() {  # forward NAME KEY REMOTE-COMMAND
  socat UNIX-LISTEN:"$work/$1.sock",fork \
    EXEC:"ssh -F /dev/null -i $work/$2 -p $port -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$work/known_hosts -o LogLevel=ERROR root@127.0.0.1 $3" \
    2>"$work/socat-$1.log" &
  pids+=($!)
  for _ in $(seq 50); do [ -S "$work/$1.sock" ] && return 0; sleep 0.1; done
  fail "socat for $1 did not start"
}
forward full full "$muscle stdio --base $base"
forward reader reader "$muscle stdio --base $base --identity proj"
forward proj proj "$muscle stdio --base $base"

# --- the project's client through ssh ---
via=unix:$work/full.sock
[ "$("$m9p" "$via" cat /top.txt)" = top-secret ] || fail "muscle9p cat through ssh"
head -c 300000 /dev/urandom > "$work/blob"
"$m9p" "$via" put /blob < "$work/blob" || fail "muscle9p put through ssh"
cmp <("$m9p" "$direct" cat /blob) "$work/blob" || fail "file written through ssh differs"
"$m9p" "$via" ls / | grep -qx projects || fail "muscle9p ls through ssh"
pass "muscle9p: ls, cat, a 300 KB put through ssh read back the same directly"
timeout 60 "$muscle" bench --target "$via" --workload smallfiles,getattr --seconds 1 --quiet > "$work/bench.out" \
  || fail "muscle bench through ssh"
pass "muscle bench smallfiles,getattr through ssh ($(grep -c . "$work/bench.out") lines of results)"

# --- diod's tools through ssh ---
timeout 30 diodls -a / -s "$work/full.sock" 2>"$work/diodls.log" | grep -qx top.txt || fail "diodls through ssh"
[ "$(timeout 30 diodcat -a / -s "$work/full.sock" top.txt 2>>"$work/diodls.log")" = top-secret ] || fail "diodcat through ssh"
pass "diodls and diodcat through ssh"

# --- half-close: a Tversion, then EOF on stdin; the Rversion still comes back ---
tversion='\025\000\000\000\144\377\377\000\000\001\000\010\0009P2000.L'
reply=$(printf "$tversion" | timeout 30 ssh -F /dev/null -i "$work/full" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$work/known_hosts" -o LogLevel=ERROR root@127.0.0.1 "$muscle stdio --base $base" | od -An -tx1 | tr -d ' \n')
[ "${reply:8:2}" = 65 ] || fail "no Rversion after half-close through ssh (got '$reply')"
pass "half-close: stdin EOF through ssh still returns the Rversion, exit 0"

# --- restricted keys ---
out=$(sshc reader root@127.0.0.1 "echo ESCAPED" </dev/null 2>&1 || true)
case $out in *ESCAPED*) fail "a command= key ran the client's command";; esac
[ "$("$m9p" "unix:$work/reader.sock" cat /top.txt)" = top-secret ] || fail "read-only key cannot read"
if echo x | "$m9p" "unix:$work/reader.sock" put /new.txt 2>"$work/ro.err"; then fail "read-only key wrote"; fi
grep -q "Read-only" "$work/ro.err" || fail "read-only key: unexpected error $(cat "$work/ro.err")"
"$m9p" "$direct" stat /new.txt 2>/dev/null && fail "the read-only key's file exists"
pass "command= key: the client's command is ignored (asked for identity proj, got reader), writes get EROFS"

[ "$("$m9p" "unix:$work/proj.sock" ls /)" = file.txt ] || fail "subtree key sees more than its root"
[ "$("$m9p" "unix:$work/proj.sock" cat /file.txt)" = inside-x ] || fail "subtree key cannot read its file"
"$m9p" "unix:$work/proj.sock" cat ../../top.txt >/dev/null 2>&1 && fail "subtree key walked out with .."
timeout 30 diodcat -a /.. -s "$work/proj.sock" top.txt >/dev/null 2>&1 && fail "subtree key escaped with aname /.."
timeout 30 diodcat -a ../.. -s "$work/proj.sock" top.txt >/dev/null 2>&1 && fail "subtree key escaped with aname ../.."
[ "$(timeout 30 diodcat -a / -s "$work/proj.sock" file.txt 2>/dev/null)" = inside-x ] || fail "diodcat with the subtree key"
pass "subtree key: sees /projects/x only; .. in walks and in the aname stay inside"

# restrict: no forwarding of the server's socket itself.
sshc reader -N -L "$work/stolen.sock:$base/musclefs.sock" root@127.0.0.1 2>"$work/fwd.log" &
fwd=$!; pids+=($fwd)
for _ in $(seq 50); do [ -S "$work/stolen.sock" ] && break; sleep 0.1; done
if [ -S "$work/stolen.sock" ] && "$m9p" "unix:$work/stolen.sock" cat /top.txt >/dev/null 2>&1; then
  fail "a restricted key forwarded the server socket"
fi
kill "$fwd" 2>/dev/null || true
# the control: the unrestricted key can (so the check above can fail)
sshc full -N -L "$work/open.sock:$base/musclefs.sock" root@127.0.0.1 2>>"$work/fwd.log" &
fwd=$!; pids+=($fwd)
for _ in $(seq 50); do [ -S "$work/open.sock" ] && break; sleep 0.1; done
[ "$("$m9p" "unix:$work/open.sock" cat /top.txt 2>/dev/null)" = top-secret ] || fail "control: unrestricted forwarding failed"
kill "$fwd" 2>/dev/null || true
pass "restrict: a command= key cannot forward the server socket (an unrestricted key can)"

grep -q "local claim accepted: identity 'reader' root=\"/\" read-only" "$work/server.log" || fail "claim not logged"
grep -q "local claim accepted: identity 'proj' root=\"/projects/x\"" "$work/server.log" || fail "subtree claim not logged"
pass "the server logs each claim with its rule"

# --- muscle mount --ssh, with a stand-in for mount(8) ---
# (this kernel may have no 9p; the qemu test is where the kernel mounts.)
# The stand-in does what the kernel does with trans=fd: it keeps the fd
# and speaks 9P on it; here socat joins the fd to a socket muscle9p uses.
mkdir -p "$work/fakebin"
cat > "$work/fakebin/mount" <<FAKE
#!/bin/sh
echo "\$@" > "$work/mount.args"
[ -f "$work/mount.fail" ] && exit 32
fd=\$(echo "\$4" | sed -n 's/.*rfdno=\([0-9]*\).*/\1/p')
socat FD:\$fd UNIX-LISTEN:$work/kernel.sock </dev/null >/dev/null 2>"$work/fake-mount.log" &
for i in 1 2 3 4 5 6 7 8 9 10; do [ -S "$work/kernel.sock" ] && exit 0; sleep 0.1; done
exit 1
FAKE
chmod +x "$work/fakebin/mount"
sshcmd="ssh -F /dev/null -i $work/full -p $port -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$work/known_hosts -o LogLevel=ERROR"
PATH=$work/fakebin:$PATH "$muscle" mount --ssh root@127.0.0.1 /mnt/nowhere --base "$base" \
  --ssh-command "$sshcmd" --remote-muscle "$muscle" > "$work/mount.out" 2>"$work/mount.log" || fail "muscle mount --ssh failed"
grep -q "^-t 9p -o trans=fd,rfdno=[0-9]*,wfdno=[0-9]*,version=9p2000.L,msize=1048576 muscle@ssh:root@127.0.0.1 /mnt/nowhere\$" \
  "$work/mount.args" || fail "mount arguments: $(cat "$work/mount.args")"
sshpid=$(sed -n 's/.*(ssh pid \([0-9]*\)).*/\1/p' "$work/mount.out")
[ -n "$sshpid" ] && kill -0 "$sshpid" || fail "no ssh left after muscle mount --ssh: $(cat "$work/mount.out")"
[ "$(ps -o comm= --ppid "$sshpid" | grep -c .)" = 0 ] || fail "ssh has children"
pgrep -f "^$muscle mount" >/dev/null && fail "a muscle mount process is left: $(pgrep -af "^$muscle mount")"
[ "$("$m9p" "unix:$work/kernel.sock" cat /top.txt)" = top-secret ] || fail "9P over the mount's fd through ssh"
for _ in $(seq 50); do kill -0 "$sshpid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$sshpid" 2>/dev/null && fail "ssh still runs after the fd's holder closed it (umount)"
touch "$work/mount.fail"
if PATH=$work/fakebin:$PATH "$muscle" mount --ssh root@127.0.0.1 /mnt/nowhere --ssh-command "$sshcmd" --remote-muscle "$muscle" \
     >/dev/null 2>"$work/mount-fail.log"; then fail "a failed mount reported success"; fi
grep -q "failed" "$work/mount-fail.log" || fail "no message for a failed mount"
sleep 0.3; pgrep -f "UserKnownHostsFile=$work/known_hosts -o LogLevel=ERROR -o BatchMode=yes" >/dev/null \
  && fail "ssh left running after a failed mount"
pass "muscle mount --ssh: mount -t 9p -o trans=fd,... gets ssh's socket, 9P flows on it, only ssh is left and it ends with the fd; a failed mount stops ssh"

# --- errors ---
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
set +e
err=$(sshc full root@127.0.0.1 "$muscle stdio --base $base" </dev/null 2>&1); rc=$?
set -e
[ $rc = 1 ] || fail "muscle stdio without a server exited $rc"
case $err in *"no musclefs is serving $base/musclefs.sock"*) ;; *) fail "unclear error: $err";; esac
pass "no server: muscle stdio says so through ssh and exits 1"
echo "ssh tests passed"
