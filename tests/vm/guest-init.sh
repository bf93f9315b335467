#!/bin/sh
# /init of the test initramfs: loads the virtio and 9p modules, mounts the
# musclefs server from the host and runs one phase of the workload. The
# host reads the MUSCLE-* markers from the serial console.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /mnt && mount -t tmpfs -o size=200m tmp /tmp
for m in $(cat /mods/order); do insmod /mods/$m.ko 2>/dev/null; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0

arg() { sed -n "s/.*muscle\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
PORT=$(arg port)
PHASE=$(arg phase)
TRANS=$(arg trans)
M=/mnt
fail() { echo "MUSCLE-FAIL: $*"; umount $M 2>/dev/null; poweroff -f; }
check() { [ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"; }

case "$TRANS" in
  tcp) mount -t 9p -o trans=tcp,port=$PORT,version=9p2000.L,msize=524288 10.0.2.2 $M \
         || fail "mount" ;;
  fd) # muscle mount without the tls module: it says so and falls back to
      # a private relay handing the kernel one end of a socketpair.
      r=$(/muscle mount 10.0.2.2:$PORT $M --identity guest --keys /keys --msize 524288 2>&1) \
         || fail "muscle mount: $r"
      case "$r" in *"kernel TLS not available"*"relay pid"*) ;; *) fail "no fallback message: $r" ;; esac
      ps | grep -q "[/]muscle mount" || fail "no relay process after the fallback mount"
      grep -q "trans=fd" /proc/mounts || fail "not a trans=fd mount: $(cat /proc/mounts)" ;;
  none) ;;  # a phase that mounts nothing from the host (ktls-halfclose)
  *) fail "unknown transport $TRANS" ;;
esac
[ "$TRANS" = none ] || echo "MUSCLE-MOUNTED"
DEEP=$M/deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t
tls_stat() { awk -v k=$1 '$1 == k { print $2 }' /proc/net/tls_stat; }
no_muscle_process() {  # nothing of ours runs but musclefs serve
  for i in $(seq 25); do ps | grep -q "[/]muscle " || return 0; sleep 0.2; done
  fail "$1: a muscle process is still running: $(ps | grep '[/]muscle ')"
}
# The TLS half-close against the guest's own server on kernel TLS (port
# $1): pipelined requests, then the client's close_notify, or a bare FIN;
# every reply must come, then the server's close_notify, then EOF.
ktls_halfclose_check() {
  seen=$(wc -l < /tmp/gs.log)
  for mode in close-notify fin; do
    r=$(timeout 30 /ktls_halfclose_probe $1 guest /keys $mode 2>&1)
    case "$r" in *MUSCLE-KTLS-HALFCLOSE-OK*) ;; *) fail "kernel-TLS half-close ($mode): $r $(tail -n 5 /tmp/gs.log)" ;; esac
    echo "$r"
  done
  # The server's log since the probes began: their handshakes put them on
  # kernel TLS, and they ended cleanly ("disconnected").
  tail -n +$((seen + 1)) /tmp/gs.log | grep -q "records kernel" \
    || fail "the probes were not on kernel TLS: $(cat /tmp/gs.log)"
  r=$(tail -n +$((seen + 1)) /tmp/gs.log | grep "closing connection")
  [ -z "$r" ] || fail "the guest server closed a half-closed connection: $r"
  echo "MUSCLE-KTLS-HALFCLOSE-DONE"
}
# Kernel TLS (after the fallback above): muscle mount hands the TLS socket
# itself to the kernel's 9p client; the kernel seals and opens records.
ktls_phase() {
  for m in $(cat /mods/ktls/order); do insmod /mods/ktls/$m.ko || fail "insmod $m"; done
  mkdir -p /k /k2 /k3 /tmp/gs
  # 1. This guest's kernel against the host's server (userspace records there).
  r=$(/muscle mount 10.0.2.2:$PORT /k --identity guest --keys /keys --msize 524288 2>&1) \
    || fail "muscle mount on kernel TLS: $r"
  case "$r" in *"kernel TLS"*"no relay process"*) ;; *) fail "not on kernel TLS: $r" ;; esac
  no_muscle_process "kernel-TLS mount"
  check "$(sha256sum < /k/big)" "$(cat /k/big.sha256)" "64 MiB read through kernel TLS"
  dd if=/dev/urandom of=/tmp/kt bs=1M count=8 2>/dev/null
  cp /tmp/kt /k/ktls-file || fail "write through kernel TLS"
  sleep 2  # idle: nothing but application data may arrive meanwhile
  check "$(sha256sum < /k/ktls-file)" "$(sha256sum < /tmp/kt)" "read back through kernel TLS"
  [ "$(tls_stat TlsCurrTxSw)" -ge 1 ] || fail "tls_stat: no kernel TLS transmit session: $(cat /proc/net/tls_stat)"
  [ "$(tls_stat TlsCurrRxSw)" -ge 1 ] || fail "tls_stat: no kernel TLS receive session"
  check "$(tls_stat TlsDecryptError)" 0 "kernel TLS decrypt errors"
  umount /k || fail "umount kernel-TLS mount"
  # 2. muscle relay on kernel TLS (the relay copies plaintext only).
  /muscle relay --keys /keys --identity guest --connect 10.0.2.2:$PORT --listen unix:/tmp/relay.sock \
    2>/tmp/relay.log &
  rp=$!
  for i in $(seq 50); do [ -S /tmp/relay.sock ] && break; sleep 0.2; done
  mount -t 9p -o trans=unix,version=9p2000.L,msize=524288 /tmp/relay.sock /k3 || fail "mount through relay"
  check "$(sha256sum < /k3/ktls-file)" "$(sha256sum < /tmp/kt)" "read through the kernel-TLS relay"
  umount /k3; kill $rp
  grep -q "kernel TLS" /tmp/relay.log || fail "relay not on kernel TLS: $(cat /tmp/relay.log)"
  # 3. A server in this guest on kernel TLS too: both ends in the kernel.
  /musclefs serve --base /tmp/gs --store :memory: --keys /keys --listen tls://127.0.0.1:4433 \
    2>/tmp/gs.log &
  sp=$!
  for i in $(seq 50); do grep -q "listening" /tmp/gs.log && break; sleep 0.2; done
  r=$(/muscle mount 127.0.0.1:4433 /k2 --identity guest --keys /keys --msize 524288 2>&1) \
    || fail "muscle mount of the guest's server: $r $(cat /tmp/gs.log)"
  cp /tmp/kt /k2/f || fail "write to the guest's server"
  mkdir /k2/d && for i in 1 2 3 4 5 6 7 8 9 10; do echo $i > /k2/d/$i; done
  check "$(sha256sum < /k2/f)" "$(sha256sum < /tmp/kt)" "read back from the guest's server"
  check "$(cat /k2/d/* | wc -l)" 10 "small files on the guest's server"
  grep -q "records kernel" /tmp/gs.log || fail "guest server not on kernel TLS: $(cat /tmp/gs.log)"
  [ "$(tls_stat TlsCurrTxSw)" -ge 2 ] || fail "tls_stat: want 2 kernel TLS sessions: $(cat /proc/net/tls_stat)"
  no_muscle_process "kernel-TLS mount of the guest's server"
  ktls_halfclose_check 4433
  # A server shutdown ends the mount as a TCP close does: errors, no hang.
  kill -TERM $sp; wait $sp
  timeout 20 ls /k2/d >/dev/null 2>&1 && fail "the mount still works after the server stopped"
  timeout 20 umount /k2 || umount -l /k2 || fail "umount after the server stopped"
  echo "MUSCLE-KTLS-OK tls_stat: $(tr '\n' ' ' < /proc/net/tls_stat)"
}

# A mount that survives network drops: muscle mount --reconnect through a
# proxy on the host that resets every busy connection every 2 s. The copy,
# fsx and a tree copy must finish without one error, every byte right,
# and the relay must have resumed its session.
reconnect_phase() {
  mkdir -p /rc
  r=$(/muscle mount 10.0.2.2:$(arg cutport) /rc --identity guest --keys /keys --msize 524288 \
      --reconnect --log /tmp/rc.log 2>&1) || fail "muscle mount --reconnect: $r"
  t=$(date +%s)
  dd if=/dev/urandom of=/tmp/rc-big bs=1M count=8 2>/dev/null
  cp /tmp/rc-big /rc/rc-big || fail "copy across network cuts"
  check "$(sha256sum < /rc/rc-big)" "$(sha256sum < /tmp/rc-big)" "read back across network cuts"
  r=$(/fsx /rc/rc-fsx.dat 600 11) || fail "fsx across network cuts: $r"
  mkdir -p /rc/tree && (cd /mods/ktls && tar cf - .) | (cd /rc/tree && tar xf -) \
    || fail "tree copy across network cuts"
  (cd /mods/ktls && find . -type f | sort | xargs cat | sha256sum) > /tmp/rc-want
  check "$(cd /rc/tree && find . -type f | sort | xargs cat | sha256sum)" "$(cat /tmp/rc-want)" \
    "tree read back across network cuts"
  rm -rf /rc/tree /rc/rc-big /rc/rc-fsx.dat || fail "remove across network cuts"
  n=$(grep -c "resumed after" /tmp/rc.log)
  [ "$n" -ge 1 ] || fail "the relay never resumed its session: $(cat /tmp/rc.log)"
  /muscle umount /rc || fail "umount the --reconnect mount"
  echo "MUSCLE-RECONNECT-OK $(($(date +%s) - t))s, $n resumes"
}

# A mount that survives server restarts: a server of the guest's own (so
# the guest can stop and kill it), on a store on disk, mounted with muscle
# mount --reconnect. fsx and a tree copy run while the server is stopped
# (SIGTERM) and started again, then killed (SIGKILL, with up to 2 s of
# answered work not committed: the redo log replays it) and started again:
# both finish without one error and every byte right. Then, idle, it is
# killed again and started again: the tree still reads back and takes writes,
# a file unlinked while a process had it open still reads back through
# its descriptor, and an fcntl lock a process held through the kill is still its own (the
# relay reclaimed it in the server's grace period): another mount's
# process cannot take it until the holder exits.
# A --soft 2 mount answers EIO while the server is away and works again
# when it is back.
restart_phase() {
  mkdir -p /tmp/rs /rs /rs2
  RS_STARTS=0
  rs_start() {
    /musclefs serve --base /tmp/rs --store /tmp/rs/store.db --keys /keys \
      --listen tls://127.0.0.1:4434 --commit-interval-ms 2000 --lock-grace 10 2>>/tmp/rs.log &
    RS_PID=$!
    RS_STARTS=$((RS_STARTS + 1))
    for i in $(seq 100); do
      [ "$(grep -c listening /tmp/rs.log)" -ge $RS_STARTS ] && return
      sleep 0.1
    done
    fail "the restarted server does not listen: $(tail -n 5 /tmp/rs.log)"
  }
  rs_start
  t=$(date +%s)
  r=$(/muscle mount 127.0.0.1:4434 /rs --identity guest --keys /keys --msize 524288 \
      --reconnect --log /tmp/rs-relay.log 2>&1) || fail "muscle mount --reconnect (restarts): $r"
  rm -f /tmp/rs-*.rc
  (r=$(/fsx /rs/rs-fsx.dat 1500 13 2>&1); echo "$?" > /tmp/rs-fsx.rc; echo "$r" > /tmp/rs-fsx.out) &
  (mkdir -p /rs/tree && (cd /mods/ktls && tar cf - .) | (cd /rs/tree && tar xf -)
   echo "$?" > /tmp/rs-tar.rc) &
  for sig in TERM KILL; do
    sleep 2
    kill -$sig $RS_PID
    while kill -0 $RS_PID 2>/dev/null; do sleep 0.05; done
    rs_start
  done
  for i in $(seq 600); do [ -f /tmp/rs-fsx.rc ] && [ -f /tmp/rs-tar.rc ] && break; sleep 0.2; done
  check "$(cat /tmp/rs-fsx.rc 2>/dev/null)" 0 "fsx across server restarts: $(cat /tmp/rs-fsx.out 2>/dev/null)"
  check "$(cat /tmp/rs-tar.rc)" 0 "tree copy across server restarts"
  (cd /mods/ktls && find . -type f | sort | xargs cat | sha256sum) > /tmp/rs-want
  check "$(cd /rs/tree && find . -type f | sort | xargs cat | sha256sum)" "$(cat /tmp/rs-want)" \
    "tree read back across server restarts"
  grep -q "store: replayed" /tmp/rs.log ||
    fail "the kill -9 during the workload left nothing to replay (it should have): $(grep store: /tmp/rs.log | tail -n 5)"
  # A file a process holds open, unlinked: still readable after the kill
  # (a process of its own: nothing started later inherits the descriptor).
  echo orphan-data > /rs/orphan || fail "write the file to unlink"
  rm -f /tmp/rs-orphan.go
  sh -c 'exec 7</rs/orphan; rm /rs/orphan && echo unlinked
         while [ ! -f /tmp/rs-orphan.go ]; do sleep 0.1; done
         read -r got <&7; echo "read $got"' > /tmp/rs-orphan.out 2>&1 &
  ORPHAN=$!
  for i in $(seq 50); do grep -q unlinked /tmp/rs-orphan.out && break; sleep 0.1; done
  grep -q unlinked /tmp/rs-orphan.out || fail "unlink the open file: $(cat /tmp/rs-orphan.out)"
  /vmtool holdlock /rs/lk > /tmp/rs-hold.out 2>&1 &
  HOLD=$!
  for i in $(seq 100); do grep -q held /tmp/rs-hold.out && break; sleep 0.1; done
  grep -q held /tmp/rs-hold.out || fail "holdlock: $(cat /tmp/rs-hold.out)"
  sleep 0.5  # (not committed yet: the redo log has it)
  kill -KILL $RS_PID
  while kill -0 $RS_PID 2>/dev/null; do sleep 0.05; done
  rs_start
  check "$(cd /rs/tree && find . -type f | sort | xargs cat | sha256sum)" "$(cat /tmp/rs-want)" \
    "tree read back after kill -9"
  echo after-kill > /rs/after-kill || fail "write after kill -9"
  touch /tmp/rs-orphan.go; wait $ORPHAN
  check "$(tail -n 1 /tmp/rs-orphan.out)" "read orphan-data" \
    "a file unlinked while open, read through its open descriptor after kill -9"
  check "$(cat /rs/after-kill)" after-kill "read after kill -9"
  # The lock: still the holder's, seen from another mount (another session
  # on the server): a try is refused.
  mkdir -p /rs3
  r=$(/muscle mount 127.0.0.1:4434 /rs3 --identity guest --keys /keys --reconnect \
      --log /tmp/rs-lock.log 2>&1) || fail "muscle mount (lock check): $r"
  r=$(/vmtool trylock /rs3/lk); check "$?" 3 "lock held through kill -9, from another mount: $r"
  kill $HOLD; wait $HOLD 2>/dev/null
  # Free once its holder exited (a try answers "held" until the grace
  # period is over).
  for i in $(seq 60); do r=$(/vmtool trylock /rs3/lk) && break; sleep 0.5; done
  check "$r" ok "lock free once its holder exited"
  /muscle umount /rs3 || fail "umount the lock check mount"
  grep -q "1 locks reclaimed (0 lost)" /tmp/rs-relay.log \
    || fail "the relay did not reclaim the lock: $(grep restored /tmp/rs-relay.log)"
  n=$(grep -c "session restored" /tmp/rs-relay.log)
  grep "session restored" /tmp/rs-relay.log | sed 's/^.*relay: /MUSCLE-RELAY /'
  [ "$n" -ge 3 ] || fail "the relay restored its session $n times, not 3: $(tail -n 20 /tmp/rs-relay.log)"
  rm -rf /rs/tree /rs/rs-fsx.dat /rs/after-kill /rs/lk || fail "remove after restarts"
  /muscle umount /rs || fail "umount the restarted mount"
  # Soft: EIO while away, then back by itself.
  r=$(/muscle mount 127.0.0.1:4434 /rs2 --identity guest --keys /keys --reconnect --soft 2 \
      --log /tmp/rs-soft.log 2>&1) || fail "muscle mount --soft: $r"
  echo soft > /rs2/soft || fail "write through the --soft mount"
  /vmtool fsync /rs2/soft >/dev/null || fail "fsync through the --soft mount"
  kill -KILL $RS_PID
  while kill -0 $RS_PID 2>/dev/null; do sleep 0.05; done
  t1=$(date +%s)
  e=$(stat /rs2/soft 2>&1) && fail "stat while the server is away succeeded (--soft 2)"
  case "$e" in *"Input/output error"*) ;; *) fail "stat while away: '$e', want EIO" ;; esac
  [ $(($(date +%s) - t1)) -le 12 ] || fail "--soft 2 took $(($(date +%s) - t1)) s to fail"
  rs_start
  ok=0
  for i in $(seq 50); do cat /rs2/soft >/dev/null 2>&1 && { ok=1; break; }; sleep 0.2; done
  [ $ok = 1 ] || fail "the --soft mount did not come back: $(cat /rs2/soft 2>&1) $(tail -n 3 /tmp/rs-soft.log)"
  check "$(cat /rs2/soft)" soft "read through the --soft mount after the server came back"
  /muscle umount /rs2 || fail "umount the --soft mount"
  kill -TERM $RS_PID
  echo "MUSCLE-RESTART-OK $(($(date +%s) - t))s, $n restores"
}

# The stat dialects: mounts the same server with version=$2 on $1 (port
# $3, msize $4) and runs the workload those dialects support (9p2000 has
# no symlinks, links, devices, owners or xattrs; .u has symlinks, links,
# fifos and numeric owners). Files of the .L mount $M are read back
# through it and its own files through $M: one tree for every dialect.
dialect_mount() {  # dir version port msize
  mkdir -p $1
  mount -t 9p -o trans=tcp,port=$3,version=$2,msize=$4 10.0.2.2 $1 || fail "mount $2"
  grep -q "$1 9p .*version=$2" /proc/mounts || grep -q "$1 9p" /proc/mounts || fail "$2 not mounted"
}
dialect_workload() {  # dir version
  D=$1/dialect-$2
  mkdir -p $D/sub/deeper || fail "$2: mkdir -p"
  echo hello > $D/sub/deeper/f || fail "$2: create"
  check "$(cat $D/sub/deeper/f)" hello "$2: read back"
  echo more >> $D/sub/deeper/f
  check "$(cat $D/sub/deeper/f)" "hello
more" "$2: append"
  head -c 1048576 /dev/urandom > /tmp/r-$2
  cp /tmp/r-$2 $D/random || fail "$2: write 1 MiB"
  sha256sum < /tmp/r-$2 > $D/random.sha256
  check "$(sha256sum < $D/random)" "$(cat $D/random.sha256)" "$2: 1 MiB read back"
  rm /tmp/r-$2
  /vmtool fsync $D/random >/dev/null || fail "$2: fsync"
  truncate -s 1000 $D/random && check "$(stat -c %s $D/random)" 1000 "$2: truncate"
  mv $D/sub/deeper/f $D/sub/deeper/g || fail "$2: rename"
  [ -e $D/sub/deeper/f ] && fail "$2: old name still there"
  check "$(head -n1 $D/sub/deeper/g)" hello "$2: renamed content"
  chmod 604 $D/sub/deeper/g && check "$(stat -c %a $D/sub/deeper/g)" 604 "$2: chmod"
  touch -d "2001-02-03 04:05:06" $D/sub/deeper/g
  check "$(stat -c %Y $D/sub/deeper/g)" 981173106 "$2: utimes"
  mkdir $D/many
  i=0
  while [ $i -lt 200 ]; do : > $D/many/e-$i; i=$((i+1)); done
  check "$(ls $D/many | sort -u | wc -l)" 200 "$2: readdir of 200, unique"
  check "$(cat $1/deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/file)" hello "$2: read what .L wrote"
  check "$(cat $1/d2/h | head -n1)" line1 "$2: read .L's renamed file"
  if [ $2 = 9p2000.u ]; then
    ln -s sub/deeper/g $D/sl || fail "$2: symlink"
    check "$(readlink $D/sl)" sub/deeper/g "$2: readlink"
    check "$(head -n1 $D/sl)" hello "$2: read through symlink"
    check "$(readlink $1/sl)" d2/h "$2: readlink of .L's symlink"
    ln $D/sub/deeper/g $D/hard || fail "$2: link"
    check "$(stat -c %i $D/hard)" "$(stat -c %i $D/sub/deeper/g)" "$2: hard link inode"
    mkfifo $D/fifo && [ -p $D/fifo ] || fail "$2: mkfifo"
    chown 321:654 $D/sub/deeper/g && check "$(stat -c %u:%g $D/sub/deeper/g)" 321:654 "$2: chown"
    check "$(stat -c %u:%g $1/hl)" 123:456 "$2: .L's owner"
    echo old > $D/over && mv $D/over $D/sub/over || fail "$2: mv across directories (EXDEV, copied)"
    check "$(cat $D/sub/over)" old "$2: moved across directories"
    echo x > $D/sub/a && echo y > $D/sub/b && mv $D/sub/a $D/sub/b || fail "$2: rename over existing"
    check "$(cat $D/sub/b)" x "$2: renamed over"
  fi
  mkdir -p $D/trash/x/y && echo a > $D/trash/x/y/z
  rm -rf $D/trash || fail "$2: rm -rf"
  [ -e $D/trash ] && fail "$2: rm -rf left something"
  # Cross-dialect: what this mount wrote, through the .L mount.
  check "$(sha256sum < $M/dialect-$2/random | cut -c1-16)" "$(sha256sum < $D/random | cut -c1-16)" "$2: .L reads it"
  check "$(stat -c %s $M/dialect-$2/random)" 1000 "$2: .L sees the size"
  check "$(stat -c %a $M/dialect-$2/sub/deeper/g)" 604 "$2: .L sees the mode"
  echo "MUSCLE-DIALECT-OK $2"
}

# Snapshots through the kernel (phase snapshots): the host wrote snap/over,
# snap/gone, snap/keep and deep/a/snapfile, took snapshot "before",
# overwrote snap/over and deep/a/snapfile, removed snap/gone, took "after",
# wrote snap/third and took an unnamed one (named by its time, $THIRD).
# $M is the live tree (plain port); the expected hashes come on the
# command line.
erofs() {  # what command...: the command must fail with EROFS
  what=$1; shift
  r=$("$@" 2>&1) && fail "$what succeeded in a snapshot"
  case "$r" in *"Read-only file system"*) ;; *) fail "$what: want EROFS, got: $r" ;; esac
}
snap_mount() {  # dir port aname
  mkdir -p $1
  mount -t 9p -o trans=tcp,port=$2,version=9p2000.L,msize=524288,aname=$3 10.0.2.2 $1 \
    || fail "mount aname=$3 on port $2"
}
snapshots_phase() {
  start=$(date +%s)
  OLD=$(arg old); NEW=$(arg new); GONE=$(arg gone); HASH=$(arg hash); THIRD=$(arg third)
  RPORT=$(arg relayport); S=/s
  # The live tree was overwritten and the file removed.
  check "$(sha256sum < $M/snap/over | cut -d' ' -f1)" "$NEW" "live snap/over is the new version"
  [ -e $M/snap/gone ] && fail "live snap/gone still there"
  snap_mount $S $PORT @snapshots
  check "$(ls $S | tr '\n' ' ')" "$THIRD after before " "ls @snapshots"
  check "$(ls -a $S | wc -l)" 5 "ls -a @snapshots (with . and ..)"
  [ -d $S/before ] && [ -d $S/$THIRD ] || fail "snapshot directories are not directories"
  check "$(stat -c %a $S)" 555 "mode of @snapshots"
  # The old versions, and the file removed from the live tree.
  check "$(sha256sum < $S/before/snap/over | cut -d' ' -f1)" "$OLD" "old version of snap/over"
  check "$(stat -c %s $S/before/snap/over)" 3000000 "old size of snap/over"
  check "$(sha256sum < $S/after/snap/over | cut -d' ' -f1)" "$NEW" "snap/over in after"
  check "$(sha256sum < $S/before/snap/gone | cut -d' ' -f1)" "$GONE" "removed file in before"
  [ -e $S/after/snap/gone ] && fail "snap/gone in after"
  [ -e $S/before/snap/third ] && fail "snap/third in before"
  check "$(cat $S/$THIRD/snap/third)" kept "snap/third in the unnamed snapshot"
  check "$(cat $S/before/snap/keep)" kept "unchanged file in before"
  check "$(cat $S/before/deep/a/snapfile)" confined-old "deep/a/snapfile in before"
  # Reads at offsets (dd skip) and a copy back into the live tree.
  check "$(dd if=$S/before/snap/over bs=4096 skip=500 count=3 2>/dev/null | sha256sum | cut -d' ' -f1)" \
    "$(arg oldpart)" "12 KiB at offset 2 MB of the old version"
  cp $S/before/snap/gone $M/snap/gone-restored || fail "copy out of the snapshot"
  check "$(sha256sum < $M/snap/gone-restored | cut -d' ' -f1)" "$GONE" "copied back into the live tree"
  rm $M/snap/gone-restored
  # Inode numbers: readdir's and stat's agree, and stay across lookups.
  check "$(ls -i $S/before/snap | awk '$2 == "keep" { print $1 }')" "$(stat -c %i $S/before/snap/keep)" \
    "readdir and stat agree on the inode"
  check "$(ls -id $S/before | awk '{ print $1 }')" "$(ls -i $S | awk '$2 == "before" { print $1 }')" \
    "snapshot directory inode"
  [ "$(stat -c %i $S/before/snap/keep)" = "$(stat -c %i $S/after/snap/keep)" ] \
    && fail "one inode number for a file in two snapshots"
  # The whole tree, as the kernel walks it: the unnamed snapshot is the
  # live tree as it was; before is it without snap/third, with snap/gone.
  (cd $M && find . | sort) > /tmp/l-live
  (cd $S/$THIRD && find . | sort) > /tmp/l-third
  (cd $S/before && find . | sort) > /tmp/l-before
  check "$(md5sum < /tmp/l-third)" "$(md5sum < /tmp/l-live)" "find in the unnamed snapshot = find in the live tree"
  check "$(grep -vx ./snap/gone /tmp/l-before | md5sum)" "$(grep -vx ./snap/third /tmp/l-third | md5sum)" \
    "find in before"
  echo "MUSCLE-SNAP-WALK-OK $(wc -l < /tmp/l-live) names"
  if [ -f $M/big ]; then  # the tree of the earlier phases: 64 MiB, links, owners
    t=$(date +%s)
    check "$(sha256sum < $S/before/big)" "$(cat $M/big.sha256)" "64 MiB from a snapshot"
    echo "MUSCLE-SNAP-BIG-OK $(($(date +%s) - t))s"
    check "$(readlink $S/before/sl)" d2/h "symlink in a snapshot"
    check "$(head -n1 $S/before/sl)" line1 "read through a symlink in a snapshot"
    check "$(stat -c %a:%u:%g:%Y $S/before/hl)" 640:123:456:981173106 "mode/owner/mtime in a snapshot"
    check "$(cat $S/before/d2/h)" "$(cat $M/d2/h)" "hard-linked file in a snapshot"
    check "$(ls $S/before/many | wc -l)" 5000 "5000 entries in a snapshot"
    check "$(cat $S/before/deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/file)" hello "deep file in a snapshot"
  fi
  df $S >/dev/null || fail "statfs of @snapshots"
  # Every change is refused with EROFS, in a snapshot and in the list.
  B=$S/before/snap
  erofs "overwrite" sh -c "echo x > $B/over"
  erofs "append" sh -c "echo x >> $B/over"
  erofs "write in place" dd if=/dev/zero of=$B/over bs=1 count=1 conv=notrunc
  erofs "truncate" truncate -s 0 $B/keep
  erofs "create" touch $B/new
  erofs "create by shell" sh -c "echo x > $B/new2"
  erofs "utimes" touch -d "2001-02-03 04:05:06" $B/keep
  erofs "chmod" chmod 600 $B/keep
  erofs "chown" chown 1:1 $B/keep
  erofs "unlink" rm $B/keep
  erofs "mkdir" mkdir $B/d
  erofs "rmdir" rmdir $S/after/snap
  erofs "rename" mv $B/keep $B/keep2
  erofs "symlink" ln -s keep $B/sl
  erofs "link" ln $B/keep $B/hard
  erofs "mkfifo" mkfifo $B/fifo
  erofs "setxattr" /vmtool setxattr $B/keep user.x y
  erofs "mkdir in @snapshots" mkdir $S/new
  erofs "rmdir of a snapshot" rmdir $S/before
  erofs "rename of a snapshot" mv $S/before $S/renamed
  check "$(sha256sum < $B/over | cut -d' ' -f1)" "$OLD" "old version after the refused writes"
  check "$(cat $B/keep):$(stat -c %a $B/keep)" kept:644 "keep after the refused writes"
  check "$(ls $B | tr '\n' ' ')" "gone keep over " "nothing made in the snapshot"
  check "$(ls $S | wc -l)" 3 "nothing made in @snapshots"
  echo "MUSCLE-SNAP-EROFS-OK"
  # One snapshot as the root of a mount: by name, by a prefix of its root
  # hash, a directory in it; unknown names fail.
  snap_mount /s1 $PORT @snapshots/before
  check "$(ls /s1/snap | tr '\n' ' ')" "gone keep over " "@snapshots/before"
  check "$(sha256sum < /s1/snap/gone | cut -d' ' -f1)" "$GONE" "removed file through @snapshots/before"
  erofs "create in @snapshots/before" touch /s1/new
  snap_mount /s2 $PORT @snapshots/$HASH
  check "$(sha256sum < /s2/snap/over | cut -d' ' -f1)" "$OLD" "@snapshots/<hash prefix $HASH>"
  snap_mount /s3 $PORT @snapshots/before/snap
  check "$(ls /s3 | tr '\n' ' ')" "gone keep over " "@snapshots/before/snap"
  mkdir -p /s4
  mount -t 9p -o trans=tcp,port=$PORT,version=9p2000.L,aname=@snapshots/nosuch 10.0.2.2 /s4 2>/dev/null \
    && fail "mounted @snapshots/nosuch"
  mount -t 9p -o trans=tcp,port=$PORT,version=9p2000.L,aname=@snapshots/before/snap/keep 10.0.2.2 /s4 2>/dev/null \
    && fail "mounted a file of a snapshot"
  umount /s1 && umount /s2 && umount /s3 || fail "umount the one-snapshot mounts"
  echo "MUSCLE-SNAP-NATIVE-OK $(($(date +%s) - start))s"
  # Through muscle relay (TLS to the server).
  snap_mount /r $RPORT @snapshots
  check "$(ls /r | tr '\n' ' ')" "$THIRD after before " "ls @snapshots through the relay"
  check "$(sha256sum < /r/before/snap/over | cut -d' ' -f1)" "$OLD" "old version through the relay"
  check "$(sha256sum < /r/before/snap/gone | cut -d' ' -f1)" "$GONE" "removed file through the relay"
  check "$(sha256sum < /r/after/snap/over | cut -d' ' -f1)" "$NEW" "after through the relay"
  erofs "overwrite through the relay" sh -c "echo x > /r/before/snap/over"
  erofs "unlink through the relay" rm /r/before/snap/keep
  erofs "mkdir through the relay" mkdir /r/before/d
  snap_mount /r1 $RPORT @snapshots/after
  check "$(cat /r1/deep/a/snapfile)" confined-new "@snapshots/after through the relay"
  umount /r1 && umount /r || fail "umount the relay's snapshot mounts"
  echo "MUSCLE-SNAP-RELAY-OK"
  # The read-only identity browses; the confined one (root=/deep/a) sees
  # its subtree in every snapshot, and nothing above it.
  snap_mount /ro $(arg roport) @snapshots
  check "$(ls /ro | tr '\n' ' ')" "$THIRD after before " "ls @snapshots as the read-only identity"
  check "$(sha256sum < /ro/before/snap/over | cut -d' ' -f1)" "$OLD" "old version as the read-only identity"
  erofs "create as the read-only identity" touch /ro/before/snap/new
  umount /ro
  snap_mount /c $(arg confport) @snapshots
  check "$(ls /c | tr '\n' ' ')" "$THIRD after before " "ls @snapshots as the confined identity"
  case " $(ls /c/before | tr '\n' ' ') " in *" snapfile "*) ;; *) fail "confined: no snapfile in before: $(ls /c/before)" ;; esac
  [ -e /c/before/snap ] || [ -e /c/before/deep ] || [ -e /c/before/big ] && fail "confined identity sees outside its subtree"
  check "$(cat /c/before/snapfile)" confined-old "confined: old version"
  check "$(cat /c/after/snapfile)" confined-new "confined: new version"
  check "$(ls /c/before | tr '\n' ' ')" "$(ls $S/before/deep/a | tr '\n' ' ')" "confined: its before is before's deep/a"
  erofs "write as the confined identity" sh -c "echo x > /c/before/snapfile"
  umount /c
  snap_mount /c1 $(arg confport) @snapshots/before
  check "$(cat /c1/snapfile)" confined-old "confined: @snapshots/before is its subtree"
  [ -e /c1/deep ] || [ -e /c1/snap ] && fail "confined: @snapshots/before shows outside"
  umount /c1
  mount -t 9p -o trans=tcp,port=$(arg confport),version=9p2000.L,aname=@snapshots/before/.. 10.0.2.2 /c1 2>/dev/null \
    && fail "confined: mounted @snapshots/before/.."
  # The hash muscle snapshots shows the confined identity (its subtree's)
  # names the snapshot for it too.
  snap_mount /c2 $(arg confport) @snapshots/$(arg confhash)
  check "$(cat /c2/snapfile)" confined-old "confined: @snapshots/<prefix $(arg confhash) of its hash in before>"
  umount /c2
  echo "MUSCLE-SNAP-RULES-OK"
  # Taken, restored and pruned from the guest (identity guest has the
  # snapshot right) while @snapshots is mounted and a file of a pruned
  # snapshot is open.
  CONN="--connect 10.0.2.2:$(arg tlsport) --identity guest --keys /keys"
  r=$(/muscle snapshot from-guest $CONN 2>&1) || fail "muscle snapshot in the guest: $r"
  check "$(ls $S | tr '\n' ' ')" "$THIRD after before from-guest " "a new snapshot in the mounted @snapshots"
  check "$(cat $S/from-guest/snap/third)" kept "snap/third in from-guest"
  r=$(/muscle restore before snap/gone $CONN 2>&1) || fail "muscle restore in the guest: $r"
  check "$(sha256sum < $M/snap/gone | cut -d' ' -f1)" "$GONE" "snap/gone restored from before"
  exec 3< $S/before/snap/over || fail "open a file of before"
  cd $S/before/snap || fail "cd into before"
  r=$(/muscle snapshot prune --keep-last 1 $CONN 2>&1) || fail "prune in the guest: $r"
  check "$(ls $S)" from-guest "@snapshots after prune --keep-last 1"
  # The open file of the pruned snapshot fails to read (its chunks are
  # gone), the pruned snapshots cannot be looked up.
  r1=$(dd bs=65536 count=1 <&3 2>&1 >/dev/null) && fail "read an open file of a pruned snapshot"
  r2=$(ls . 2>&1 | tr '\n' ' ')
  r3=$(cat $S/after/snap/keep 2>&1) && fail "read a file of a pruned snapshot: $r3"
  case "$r3" in *"No such file"*) ;; *) fail "a pruned snapshot's file: want ENOENT, got: $r3" ;; esac
  echo "MUSCLE-SNAP-PRUNED (open file: $r1) (its directory: $r2) (a pruned snapshot's file: $r3)"
  cd /; exec 3<&-
  # (Only now: a dentry the kernel holds, e.g. a cwd's, is not looked up again.)
  [ -e $S/before ] && fail "before is still there after the prune"
  check "$(sha256sum < $M/snap/gone | cut -d' ' -f1)" "$GONE" "restored file after the prune"
  check "$(cat $S/from-guest/snap/keep)" kept "from-guest after the prune"
  umount $S || fail "umount @snapshots"
  umount $M || fail "umount"
  echo "MUSCLE-SNAP-OK $(($(date +%s) - start))s"
}

if [ "$PHASE" = write ]; then
  start=$(date +%s)
  mkdir -p $DEEP || fail "mkdir -p"
  echo hello > $DEEP/file
  check "$(cat $DEEP/file)" hello "deep file"

  echo line1 > $M/f && echo line2 >> $M/f
  check "$(cat $M/f)" "line1
line2" "append"

  dd if=/dev/urandom of=/tmp/big bs=1M count=64 2>/dev/null
  cp /tmp/big $M/big || fail "write 64 MiB"
  /vmtool fsync $M/big >/dev/null || fail "fsync"
  want=$(sha256sum < /tmp/big)
  check "$(sha256sum < $M/big)" "$want" "64 MiB read back"
  echo "$want" > $M/big.sha256
  echo "MUSCLE-BIG-OK $(($(date +%s) - start))s"

  head -c 1048576 /tmp/big > $M/t
  truncate -s 100000 $M/t
  check "$(stat -c %s $M/t)" 100000 "truncate down"
  check "$(sha256sum < $M/t)" "$(head -c 100000 /tmp/big | sha256sum)" "truncated content"
  truncate -s 3000000 $M/t
  check "$(stat -c %s $M/t)" 3000000 "truncate up"
  check "$(tail -c 100 $M/t | tr -d '\0' | wc -c)" 0 "zeros after truncate up"
  rm /tmp/big

  mv $M/f $M/g || fail "rename"
  mkdir $M/d2
  mv $M/g $M/d2/g || fail "rename across directories"
  echo old > $M/d2/h
  mv $M/d2/g $M/d2/h || fail "rename over existing"
  check "$(cat $M/d2/h)" "line1
line2" "renamed content"
  [ -e $M/d2/g ] && fail "old name still there"

  ln $M/d2/h $M/hl || fail "link"
  check "$(stat -c %i $M/hl)" "$(stat -c %i $M/d2/h)" "hard link inode"
  check "$(stat -c %h $M/hl)" 2 "link count"
  ln -s d2/h $M/sl || fail "symlink"
  check "$(readlink $M/sl)" d2/h "readlink"
  check "$(head -n1 $M/sl)" line1 "read through symlink"

  chmod 640 $M/hl && check "$(stat -c %a $M/d2/h)" 640 "chmod"
  chown 123:456 $M/hl && check "$(stat -c %u:%g $M/hl)" 123:456 "chown"
  touch -d "2001-02-03 04:05:06" $M/hl
  check "$(stat -c %Y $M/hl)" 981173106 "utimes"

  mkdir $M/many
  i=0
  while [ $i -lt 5000 ]; do : > $M/many/entry-$i; i=$((i+1)); done
  check "$(ls $M/many | wc -l)" 5000 "readdir of 5000"
  check "$(ls -a $M/many | sort -u | wc -l)" 5002 "readdir unique, with . and .."
  echo "MUSCLE-MANY-OK"

  mkdir -p $M/trash/x/y && echo a > $M/trash/x/y/z && echo b > $M/trash/w
  rm -rf $M/trash || fail "rm -rf"
  [ -e $M/trash ] && fail "rm -rf left something"

  df $M | grep -q mnt || fail "df"
  /vmtool fsync $M/d2/h >/dev/null || fail "fsync"

  r=$(/vmtool flock $M/d2/h) || fail "flock: $r"
  r=$(/vmtool fcntl $M/lockfile) || fail "fcntl locks: $r"

  r=$(/vmtool setxattr $M/hl user.color blue) || fail "setxattr: $r"
  check "$(/vmtool getxattr $M/hl user.color)" blue "getxattr"
  /vmtool setxattr $M/hl user.gone x >/dev/null
  r=$(/vmtool rmxattr $M/hl user.gone) || fail "removexattr: $r"

  r=$(/vmtool unlinked $M/uo) || fail "unlinked-open: $r"

  # Stress: fsx checks every read of a file against a model through 20,000
  # random writes, reads, truncates and reopens; fsstress runs 4 processes
  # of 2,000 racing namespace and data operations each.
  t=$(date +%s)
  r=$(/fsx $M/fsx.dat 20000 7) || fail "fsx: $r"
  echo "MUSCLE-FSX-OK $(($(date +%s) - t))s: $r"
  t=$(date +%s)
  r=$(/fsstress $M/stress 4 2000 7) || fail "fsstress: $r"
  echo "MUSCLE-FSSTRESS-OK $(($(date +%s) - t))s: $r"
  rm -rf $M/stress $M/fsx.dat || fail "remove the stress tree"
  t=$(date +%s)
  dialect_mount /u 9p2000.u $PORT 524288
  dialect_mount /p 9p2000 $PORT 65536
  dialect_workload /u 9p2000.u
  dialect_workload /p 9p2000
  # 5000 entries as stat records at msize 64 KiB: many reads, each
  # continuing where the last ended.
  check "$(ls /p/many | sort -u | wc -l)" 5000 "9p2000: readdir of the 5000 the .L mount made"
  # Written by .u, read by 9p2000, and the other way round.
  check "$(cat /p/dialect-9p2000.u/random.sha256)" "$(cat /u/dialect-9p2000.u/random.sha256)" "9p2000 reads .u's file"
  check "$(sha256sum < /u/dialect-9p2000/random)" "$(sha256sum < $M/dialect-9p2000/random)" ".u reads 9p2000's file"
  check "$(readlink $M/dialect-9p2000.u/sl)" sub/deeper/g ".L reads .u's symlink"
  check "$(stat -c %u:%g $M/dialect-9p2000.u/sub/deeper/g)" 321:654 ".L sees .u's chown"
  umount /u || fail "umount 9p2000.u"
  umount /p || fail "umount 9p2000"
  echo "MUSCLE-DIALECTS-OK $(($(date +%s) - t))s"
  sync
  umount $M || fail "umount"
  echo "MUSCLE-WRITE-OK $(($(date +%s) - start))s"
elif [ "$PHASE" = verify ] || [ "$PHASE" = rules ]; then
  check "$(cat $DEEP/file)" hello "deep file after restart"
  check "$(sha256sum < $M/big)" "$(cat $M/big.sha256)" "64 MiB after restart"
  check "$(stat -c %s $M/t)" 3000000 "truncated size after restart"
  check "$(cat $M/sl | head -n1)" line1 "symlink after restart"
  check "$(stat -c %h $M/hl)" 2 "link count after restart"
  check "$(stat -c %a:%u:%g $M/hl)" 640:123:456 "mode/owner after restart"
  check "$(stat -c %Y $M/hl)" 981173106 "mtime after restart"
  check "$(ls $M/many | wc -l)" 5000 "5000 entries after restart"
  check "$(/vmtool getxattr $M/hl user.color)" blue "xattr after restart"
  [ -e $M/uo ] && fail "unlinked file came back"
  [ -e $M/trash ] && fail "removed tree came back"
  echo "through $TRANS $(date)" > $M/written-through-$TRANS || fail "write through $TRANS"
  check "$(cat $M/written-through-$TRANS | cut -c1-7)" "through" "read back through $TRANS"
  if [ "$PHASE" = verify ]; then
    # The stat dialects through the same TLS relay, after the restart:
    # what each wrote in the first boot, and part of the big file .L wrote.
    t=$(date +%s)
    dialect_mount /u 9p2000.u $PORT 524288
    dialect_mount /p 9p2000 $PORT 131072
    check "$(head -c 16777216 /p/big | sha256sum)" "$(head -c 16777216 $M/big | sha256sum)" \
      "9p2000 reads the first 16 MiB of .L's big file after restart"
    for v in 9p2000 9p2000.u; do
      for d in /u /p $M; do
        check "$(sha256sum < $d/dialect-$v/random | cut -c1-16)" \
          "$(sha256sum < $M/dialect-$v/random | cut -c1-16)" "$v's file through $d after restart"
      done
    done
    check "$(readlink /u/dialect-9p2000.u/sl)" sub/deeper/g ".u symlink after restart"
    check "$(ls /u/many | wc -l)" 5000 "9p2000.u readdir through TLS"
    echo "through 9p2000 over TLS" > /p/written-by-9p2000 || fail "9p2000 write through TLS"
    check "$(cat $M/written-by-9p2000)" "through 9p2000 over TLS" ".L reads 9p2000's TLS write"
    echo "through .u over TLS" > /u/written-by-9p2000.u || fail ".u write through TLS"
    check "$(cat /p/written-by-9p2000.u)" "through .u over TLS" "9p2000 reads .u's TLS write"
    umount /u; umount /p
    echo "MUSCLE-DIALECTS-TLS-OK $(($(date +%s) - t))s"
  fi
  if [ "$PHASE" = rules ]; then
    # Access rules through the kernel: a read-only identity and one
    # confined to deep/a, each through its own relay on the host.
    mkdir -p /ro /conf
    mount -t 9p -o trans=tcp,port=$(arg roport),version=9p2000.L 10.0.2.2 /ro || fail "mount ro"
    mount -t 9p -o trans=tcp,port=$(arg confport),version=9p2000.L,nosuid,nodev 10.0.2.2 /conf || fail "mount confined"
    check "$(cat /ro/big.sha256)" "$(cat $M/big.sha256)" "read through read-only identity"
    touch /ro/new-file 2>/dev/null && fail "read-only identity could create a file"
    mkdir /ro/newdir 2>/dev/null && fail "read-only identity could mkdir"
    rm /ro/d2/h 2>/dev/null && fail "read-only identity could remove (rm said ok)"
    [ -e $M/d2/h ] || fail "read-only identity could remove"
    echo x >> /ro/d2/h 2>/dev/null && fail "read-only identity could write"
    check "$(ls /conf)" b "confined identity sees only its subtree"
    [ -e /conf/big ] && fail "confined identity sees outside"
    echo inside > /conf/b/mine || fail "confined identity cannot write inside"
    check "$(cat $M/deep/a/b/mine)" inside "confined write landed in deep/a/b"
    # The confined identity's root is squashed (its rule says nothing
    # else): what root makes there is nobody's, and it makes no device
    # nodes or set-uid programs, and gives nothing to root.
    echo squashed > /conf/b/by-root || fail "confined identity cannot create as root"
    check "$(stat -c %u:%g $M/deep/a/b/by-root)" 65534:65534 "owner of a file root made through a squashed identity"
    mknod /conf/b/mem c 1 1 2>/dev/null && fail "squashed identity made a device node"
    [ -e $M/deep/a/b/mem ] && fail "squashed identity's device node exists"
    chmod u+s /conf/b/by-root 2>/dev/null && fail "squashed identity set the set-uid bit"
    check "$(stat -c %a $M/deep/a/b/by-root)" 644 "mode after a refused chmod u+s"
    chown 0 /conf/b/by-root 2>/dev/null && fail "squashed identity gave a file to root"
    mkfifo /conf/b/fifo || fail "squashed identity cannot make a FIFO"
    umount /ro; umount /conf
    echo "MUSCLE-RULES-OK"
    reconnect_phase
    restart_phase
  fi
  if [ "$TRANS" = fd ]; then /muscle umount $M || fail "muscle umount"; else umount $M || fail "umount"; fi
  if [ "$PHASE" = rules ]; then ktls_phase; fi
  echo "MUSCLE-VERIFY-OK"
elif [ "$PHASE" = snapshots ]; then
  snapshots_phase
elif [ "$PHASE" = reconnect ]; then
  reconnect_phase
  restart_phase
elif [ "$PHASE" = ktls-halfclose ]; then
  # Only the half-close of ktls_phase, on a fresh guest server.
  for m in $(cat /mods/ktls/order); do insmod /mods/ktls/$m.ko || fail "insmod $m"; done
  mkdir -p /tmp/gs
  /musclefs serve --base /tmp/gs --store :memory: --keys /keys --listen tls://127.0.0.1:4433 \
    2>/tmp/gs.log &
  for i in $(seq 50); do grep -q "listening" /tmp/gs.log && break; sleep 0.2; done
  ktls_halfclose_check 4433
else
  fail "unknown phase $PHASE"
fi
poweroff -f
