#!/usr/bin/env bash
# TLS-PSK against real peers: `muscle keys`, openssl s_client, stunnel in
# both directions with diod's tools as the 9P client, and tcpdump proving
# that nothing crosses the TLS port in clear (with the native port as the
# control).
# usage: interop_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
work=$(mktemp -d /tmp/musclefs-tls-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done; exit 1; }
pass() { echo "ok - $*"; }
sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
muscle=$build/muscle
# Ports below the ephemeral range (32768+), so no outgoing connection holds one.
port() { echo $((20000 + RANDOM % 12000)); }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; fail "nothing listening on $1"; }

server=$work/server; client=$work/client
mkdir -p "$server" "$client"

# --- muscle keys ---
out=$("$muscle" keys add client-a --base "$server")
line=$(echo "$out" | grep '^client-a:') || fail "keys add printed no client line"
[ "$(stat -c %a "$server/keys")" = 600 ] || fail "keys file not created 0600"
echo "$out" | grep -q "muscle relay --connect" || fail "keys add does not print the relay command"
"$muscle" keys add client-a --base "$server" 2>/dev/null && fail "duplicate add accepted"
"$muscle" keys add client-b --base "$server" >/dev/null
secret_b=$(grep '^client-b:' "$server/keys" | cut -d: -f2)
list=$("$muscle" keys list --base "$server")
[ "$list" = "client-a
client-b" ] || fail "keys list: $list"
echo "$list" | grep -q "${line#client-a:}" && fail "keys list printed a secret"
"$muscle" keys rotate client-b --base "$server" >/dev/null
[ "$(grep '^client-b:' "$server/keys" | cut -d: -f2)" != "$secret_b" ] || fail "rotate kept the secret"
pass "muscle keys add/list/rotate; list shows names only"

echo "$line" > "$client/keys"; chmod 600 "$client/keys"
key=${line#client-a:}

chmod 644 "$server/keys"
tls=$(port); native=$(port)
if "$build/musclefs" serve --base "$server" --listen "tls://127.0.0.1:$tls" 2>"$work/refuse.log"; then
  fail "server started with a world-readable keys file"
fi
grep -q "chmod 600 $server/keys" "$work/refuse.log" || fail "refusal does not name the fix"
chmod 600 "$server/keys"
pass "insecure keys file refused with the chmod that fixes it"

"$build/musclefs" serve --base "$server" --listen "tls://127.0.0.1:$tls" \
  --listen "tcp://127.0.0.1:$native" 2>"$work/server.log" &
pids+=($!)
wait_port "$tls"

# --- openssl s_client: handshake and a Tversion ---
tversion='\x15\x00\x00\x00\x64\xff\xff\x00\x00\x01\x00\x08\x009P2000.L'
reply=$( (printf "$tversion"; sleep 1) | timeout 10 openssl s_client -connect "127.0.0.1:$tls" \
  -tls1_2 -psk_identity client-a -psk "$key" -quiet 2>"$work/openssl.log" | od -An -c | tr -d ' \n' || true)
echo "$reply" | grep -q "9P2000.L" || fail "openssl s_client got no Rversion: $reply"
pass "openssl s_client -tls1_2 -psk completes a handshake and exchanges Tversion"
if (printf "$tversion"; sleep 1) | timeout 10 openssl s_client -connect "127.0.0.1:$tls" \
  -tls1_2 -quiet >/dev/null 2>&1; then
  grep -q "handshake FAILED" "$work/server.log" || fail "a client without PSK was not refused"
fi
pass "a client without a PSK is refused"

# --- stunnel client -> musclefs TLS, diod tools through it ---
echo "hello through stunnel" | "$build/tests/muscle9p" "tcp://127.0.0.1:$native" put greeting.txt
# Many full 16 KiB records and a partial one, both ways through OpenSSL.
head -c 3000001 /dev/urandom > "$work/big.bin"
"$build/tests/muscle9p" "tcp://127.0.0.1:$native" put big.bin < "$work/big.bin"
big_sha=$(sha256sum < "$work/big.bin")
sc=$(port)
cat > "$work/stunnel-client.conf" <<CONF
foreground = yes
pid =
[muscle]
client = yes
accept = 127.0.0.1:$sc
connect = 127.0.0.1:$tls
PSKsecrets = $client/keys
PSKidentity = client-a
CONF
stunnel4 "$work/stunnel-client.conf" >"$work/stunnel-client.log" 2>&1 &
pids+=($!)
wait_port "$sc"
diodls -s "127.0.0.1:$sc" -a / -l | grep -q greeting.txt || fail "diodls through stunnel client"
[ "$(diodcat -s "127.0.0.1:$sc" -a / greeting.txt)" = "hello through stunnel" ] || fail "diodcat through stunnel client"
grep -q "TLS handshake ok: identity 'client-a'" "$work/server.log" || fail "server did not log the identity"
[ "$(diodcat -s "127.0.0.1:$sc" -a / big.bin | sha256sum)" = "$big_sha" ] || fail "3 MB through stunnel client differs"
# Our record layer sealed what stunnel's OpenSSL opened.
grep -q "identity 'client-a' suite TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256.* records userspace" \
  "$work/server.log" || fail "the userspace record layer did not carry the stunnel connection"
# stunnel keeps the session; its second connection resumes from our ticket.
grep -q "identity 'client-a' suite .* (resumed)" "$work/server.log" || fail "stunnel did not resume the TLS session"
pass "stunnel client -> musclefs TLS listener (diodls, diodcat of 3 MB, userspace records; second connection resumed)"

# --- muscle relay -> stunnel server -> musclefs native ---
ss=$(port); rl=$(port)
cat > "$work/stunnel-server.conf" <<CONF
foreground = yes
pid =
[muscle]
accept = 127.0.0.1:$ss
connect = 127.0.0.1:$native
PSKsecrets = $server/keys
ciphers = PSK
CONF
stunnel4 "$work/stunnel-server.conf" >"$work/stunnel-server.log" 2>&1 &
pids+=($!)
wait_port "$ss"
"$muscle" relay --base "$client" --connect "127.0.0.1:$ss" --listen "127.0.0.1:$rl" 2>"$work/relay-stunnel.log" &
pids+=($!)
wait_port "$rl"
[ "$(diodcat -s "127.0.0.1:$rl" -a / greeting.txt)" = "hello through stunnel" ] || fail "diodcat through relay + stunnel server"
[ "$(diodcat -s "127.0.0.1:$rl" -a / big.bin | sha256sum)" = "$big_sha" ] || fail "3 MB through relay + stunnel server differs"
pass "muscle relay -> stunnel server -> musclefs native listener (diodcat, 3 MB)"

# --- relay error messages ---
echo "client-a:$(printf '%064d' 0)" > "$work/wrong.keys"; chmod 600 "$work/wrong.keys"
msg=$("$muscle" relay --keys "$work/wrong.keys" --connect "127.0.0.1:$tls" --listen "127.0.0.1:$(port)" 2>&1) && fail "relay with a wrong key started"
echo "$msg" | grep -q "did not accept identity 'client-a'" || fail "wrong key message: $msg"
msg=$("$muscle" relay --base "$client" --connect "127.0.0.1:1" --listen "127.0.0.1:$(port)" 2>&1) && fail "relay to a closed port started"
echo "$msg" | grep -qi "connection refused" || fail "unreachable message: $msg"
msg=$("$muscle" relay --base "$client" --connect "127.0.0.1:$tls" --listen "0.0.0.0:$(port)" 2>&1) && fail "relay listened on all addresses"
echo "$msg" | grep -q "must stay on this machine" || fail "non-loopback relay message: $msg"
pass "relay explains a wrong key, an unreachable server and a non-loopback listen address"

# --- tcpdump: TLS port shows neither contents nor names; native port does ---
rp=$(port)
"$muscle" relay --base "$client" --connect "127.0.0.1:$tls" --listen "127.0.0.1:$rp" 2>"$work/relay.log" &
pids+=($!)
wait_port "$rp"
capture() {  # port file-name marker endpoint
  $sudo tcpdump -i lo -U -w "$work/$1.pcap" "tcp port $1" 2>"$work/tcpdump-$1.log" &
  local tp=$!
  sleep 1
  echo "$3" | "$build/tests/muscle9p" "$4" put "$2"
  [ "$("$build/tests/muscle9p" "$4" cat "$2")" = "$3" ] || fail "read back through $4"
  sleep 1
  $sudo kill "$tp"; wait "$tp" 2>/dev/null || true
  # A pcap file is never empty (it has a header): count the packets, so
  # that a capture that missed the session cannot pass the checks below.
  local n
  n=$($sudo tcpdump -nr "$work/$1.pcap" 2>/dev/null | wc -l)
  [ "$n" -ge 10 ] || fail "tcpdump captured $n packets on port $1 (the session was not captured)"
  echo "captured $n packets on port $1"
}
marker="MARKER-$(date +%s)-plaintext-should-never-be-seen"
capture "$tls" secret-name-on-tls.txt "$marker" "tcp://127.0.0.1:$rp"
# The session really is in the capture: TLS 1.2 application-data records.
LC_ALL=C grep -qaP '\x17\x03\x03' "$work/$tls.pcap" || fail "no TLS application data in the capture of port $tls"
grep -aq "$marker" "$work/$tls.pcap" && fail "file contents visible on the TLS port"
grep -aq "secret-name-on-tls" "$work/$tls.pcap" && fail "file name visible on the TLS port"
capture "$native" control-name.txt "$marker" "tcp://127.0.0.1:$native"
grep -aq "$marker" "$work/$native.pcap" || fail "control: marker not seen on the native port"
grep -aq "control-name" "$work/$native.pcap" || fail "control: name not seen on the native port"
pass "tcpdump: TLS port carries neither the marker nor the file name; the native port does"

# --- SIGHUP via muscle keys remove: live connection of the removed identity closes ---
exec 3<>"/dev/tcp/127.0.0.1/$rp"   # a live TLS connection of client-a, via the relay
sleep 1
"$muscle" keys remove client-a --base "$server" | grep -q "told the running musclefs" || fail "keys remove did not signal the server"
sleep 1
grep -q "keys reloaded" "$work/server.log" || fail "server did not reload"
grep -q "identity removed or its key changed" "$work/server.log" || fail "live connection of the removed identity stayed"
exec 3>&-
pass "muscle keys remove reloads the server and cuts the removed identity off"
echo "TLS interop tests passed"
