#include "server/config.h"
#include "server/metrics_http.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

#include "s3/s3_client.h"
#include "transport/endpoint.h"

namespace muscle::server {

const char* Usage() {
  return R"(usage: musclefs serve [options]     serve the tree over 9P2000.L
       musclefs check [options]     verify the store (re-hashes every chunk)
       musclefs gc [options]        compact pack files, give dead space back
       musclefs upgrade [options]   migrate an older store format in place
       musclefs upgrade --encrypt [--unattended] [options]
                                    convert a plain store (local packs) to one
                                    encrypted at rest, in place, snapshots too
       musclefs init [--encrypt [--unattended]] [options]
                                    make a new store (encrypted at rest with
                                    --encrypt: a new master key in its key file)
       musclefs key add PATH [--unattended] [options]
                                    another key file for the store's key (a
                                    second passphrase, or an unattended file)
       musclefs key remove PATH [options]
                                    remove a key file, proven redundant by
                                    unlocking the key file in force
       musclefs key rotate [options]
                                    a new key for new data; the key file in
                                    force is rewritten to hold it, every
                                    other key file stops opening the store
       musclefs key list [options]  the store's key generations and packs
       musclefs key rewrite [options]
                                    rewrite the packs sealed under older keys
       musclefs key retire GENERATION [options]
                                    drop an older key no live chunk needs
       musclefs restore-from --chunks s3://BUCKET[/PREFIX] [options]
                                    rebuild a store on a new base from its
                                    bucket (and key) alone: its snapshots, the
                                    live tree as the newest one
       musclefs --help

check, gc, upgrade and restore-from show their progress on stderr when it is
a terminal; --no-progress never, --progress always.

options:
  --base DIR         base directory (default $MUSCLE_BASE, else $HOME/lib/muscle)
  --store FILE       store database (default $BASE/store.db; ":memory:" for an
                     ephemeral tree)
  --listen ADDR      unix:PATH (mode 0600), tcp://HOST:PORT (loopback) or
                     tls://HOST:PORT (TLS-PSK, any address); repeatable
                     (default unix:$BASE/musclefs.sock only). Plain tcp:// has
                     no authentication: on 127.0.0.1 every local user can
                     connect and act as any uid, root included
  --keys FILE        PSK keys for tls:// listeners (default $BASE/keys;
                     manage with muscle keys)
  --access "NAME [root=/path] [read-only] [snapshot] [uid=N] [gid=N]
            [no-root-squash] [setid] [devices]"
                     confine an identity (TLS, or SSH through muscle stdio
                     --identity) to a subtree and/or make it read-only;
                     "snapshot" lets it take, prune and restore snapshots.
                     An identity's root acts as uid/gid 65534 unless
                     no-root-squash; uid=/gid= make every request act as
                     that owner; set-uid/set-gid files and device nodes
                     are refused unless setid / devices
  --snapshot-every DURATION
                     take a snapshot of the tree this often (e.g. 15m, 1h,
                     1d; default off); browse them with aname=@snapshots
  --handshake-timeout-ms N   (default 10000)
  --max-failed-handshakes N  per peer address per minute (default 10)
  --max-concurrent-handshakes N  TLS handshakes under way at once per peer
                     address; more are refused (default 128)
  --tls-ticket-lifetime S    seconds a TLS session ticket lets a client
                     resume without a key exchange (default 3600; 0 = off)
  --session-lease S  seconds a resumable session (muscle relay --reconnect)
                     whose network dropped is kept for its relay to redial
                     (default 120)
  --lock-grace S     seconds after a restart in which relays reclaim the locks
                     their sessions held and nobody else takes one (default
                     20; only when locks were held; 0 = none)
  --loops N          event loops TLS connections are spread over (their
                     records are sealed on the loop's thread; default 0 =
                     one per core; 1 = everything on the main loop)
  --metrics ADDR     serve Prometheus metrics (GET /metrics, plain HTTP) on
                     unix:PATH (mode 0600) or tcp://127.0.0.1:PORT (loopback
                     only; default: no metrics listener)
  --allow-plaintext-network
                     allow plain TCP on a non-loopback address (file contents
                     and names cross the network unencrypted)
  --msize BYTES      largest message size offered (4096-1048576, default 1048576)
  --commit-interval-ms N
                     how long un-fsynced writes may wait before commit (default 1000)
  --store-readers N  threads answering reads and lookups on their own store
                     connections, beside the one writer (0-16, default 2)
  --chunks s3://BUCKET[/PREFIX]
                     keep chunk data in an S3 bucket (packs of ~32 MiB), the
                     local pack directory its write-back cache (default: local
                     pack files only); the database stays local
  --s3-endpoint URL  the S3 service (e.g. http://127.0.0.1:7480 for a Ceph
                     RGW; default AWS)
  --s3-region NAME   (default us-east-1)   --s3-addressing auto|path|virtual-host
  --s3-credentials FILE
                     AWS shared-credentials file (mode 0600, yours); default:
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the
                     environment
  --cache-size SIZE  uploaded packs kept in the local cache (e.g. 20G;
                     default 4G); packs not yet uploaded always stay
  --key-file FILE    the key file of an encrypted store (default
                     $BASE/store.key when it exists); a passphrase key file
                     is unlocked with --passphrase-file or at the terminal
  --passphrase-file FILE
                     the passphrase (first line; mode 0600, yours)
  --new-passphrase-file FILE
                     (key add, key rotate) the new key file's passphrase
  -D                 trace every 9P message to stderr
  --check-config     (serve) validate musclefs.conf, flags, listen addresses
                     and the keys file, print what would be served, exit 0
                     if it would start and 1 if not

The config file $BASE/musclefs.conf may set store, listen, keys, access,
msize, commit-interval-ms, store-readers, snapshot-every, handshake-timeout-ms,
max-failed-handshakes, tls-ticket-lifetime, session-lease, lock-grace, loops, max-concurrent-handshakes,
allow-plaintext-network, metrics, chunks, s3-endpoint, s3-region, s3-addressing,
s3-credentials, cache-size, key-file and passphrase-file as "key = value" lines; a
flag on the command line always wins over it. It must be owned by you or
root and not writable by group or others. SIGHUP (systemctl reload)
reloads the keys file.
)";
}

std::string DefaultBase() {
  if (const char* b = getenv("MUSCLE_BASE"); b && *b) return b;
  const char* home = getenv("HOME");
  return std::string(home && *home ? home : ".") + "/lib/muscle";
}

namespace {

Status SetKey(Config& c, const std::string& key, const std::string& value,
              const std::string& where, bool from_file) {
  auto number = [&](uint64_t lo, uint64_t hi, uint64_t& out) -> Status {
    char* end = nullptr;
    unsigned long long v = strtoull(value.c_str(), &end, 10);
    if (value.empty() || *end || v < lo || v > hi)
      return Status(EINVAL, where + ": " + key + " must be a number from " +
                                std::to_string(lo) + " to " + std::to_string(hi) +
                                ", got '" + value + "'");
    out = v;
    return Status::Ok();
  };
  if (key == "store") {
    c.server.store_path = value;
  } else if (key == "listen") {
    auto e = transport::ParseEndpoint(value);  // checked here to name file:line or flag
    if (!e.ok()) return Status(EINVAL, where + ": " + e.status().message());
    c.server.listen.push_back(value);
  } else if (key == "metrics") {
    auto e = CheckMetricsAddress(value);  // refused here to name file:line or flag
    if (!e.ok()) return Status(EINVAL, where + ": " + e.status().message());
    c.server.metrics = value;
  } else if (key == "allow-plaintext-network") {
    if (value != "yes" && value != "no" && value != "true" && value != "false")
      return Status(EINVAL, where + ": allow-plaintext-network must be yes or no");
    c.server.allow_plaintext_network = value == "yes" || value == "true";
  } else if (key == "msize") {
    uint64_t v;
    MUSCLE_RETURN_IF_ERROR(number(p9::kMinMsize, p9::kMaxMsize, v));
    c.server.max_msize = uint32_t(v);
  } else if (key == "keys") {
    c.server.keys_path = value;
  } else if (key == "handshake-timeout-ms") {
    uint64_t v;
    MUSCLE_RETURN_IF_ERROR(number(10, 600000, v));
    c.server.handshake_timeout = std::chrono::milliseconds(v);
  } else if (key == "max-failed-handshakes") {
    uint64_t v;
    MUSCLE_RETURN_IF_ERROR(number(1, 1000000, v));
    c.server.max_failed_handshakes = int(v);
  } else if (key == "max-concurrent-handshakes") {
    uint64_t v;
    MUSCLE_RETURN_IF_ERROR(number(1, 100000, v));
    c.server.max_concurrent_handshakes = int(v);
  } else if (key == "loops") {
    uint64_t v;
    MUSCLE_RETURN_IF_ERROR(number(0, 256, v));
    c.server.loops = int(v);
  } else if (key == "lock-grace") {
    uint64_t v;
    MUSCLE_RETURN_IF_ERROR(number(0, 3600, v));
    c.server.lock_grace = std::chrono::seconds(v);
  } else if (key == "session-lease") {
    uint64_t v;
    MUSCLE_RETURN_IF_ERROR(number(1, 86400, v));
    c.server.session_lease = std::chrono::seconds(v);
  } else if (key == "tls-ticket-lifetime") {
    uint64_t v;
    MUSCLE_RETURN_IF_ERROR(number(0, 86400, v));
    c.server.ticket_lifetime_seconds = uint32_t(v);
  } else if (key == "access") {
    // access = IDENTITY [root=/sub/tree] [read-only] [snapshot] [uid=N] [gid=N]
    //          [root-squash|no-root-squash] [setid] [devices]   (auth/owner_rule.h)
    std::vector<std::string> words;
    size_t i = 0;
    while (i < value.size()) {
      size_t j = value.find_first_of(" \t", i);
      if (j == std::string::npos) j = value.size();
      if (j > i) words.push_back(value.substr(i, j - i));
      i = j + 1;
    }
    if (words.empty())
      return Status(EINVAL, where + ": access needs an identity: access = NAME [root=/path] [read-only] [snapshot]");
    AccessRule rule;
    rule.owner = auth::OwnerRule::Remote();
    // uid=N / gid=N: a numeric id below 2^32-1 (the 9P "no id" value).
    auto id = [&](const std::string& word, std::optional<uint32_t>& out) -> Status {
      std::string n = word.substr(4);
      char* end = nullptr;
      errno = 0;
      unsigned long long v = strtoull(n.c_str(), &end, 10);
      if (n.empty() || !isdigit(static_cast<unsigned char>(n[0])) || *end || errno || v >= 0xffffffffull)
        return Status(EINVAL, where + ": " + word.substr(0, 3) + "= needs a number (a numeric id, not a name): '" + word + "'");
      out = uint32_t(v);
      return Status::Ok();
    };
    for (size_t w = 1; w < words.size(); w++) {
      if (words[w].rfind("uid=", 0) == 0) {
        MUSCLE_RETURN_IF_ERROR(id(words[w], rule.owner.uid));
      } else if (words[w].rfind("gid=", 0) == 0) {
        MUSCLE_RETURN_IF_ERROR(id(words[w], rule.owner.gid));
      } else if (words[w] == "root-squash") {
        rule.owner.squash_root = true;
      } else if (words[w] == "no-root-squash") {
        rule.owner.squash_root = false;
      } else if (words[w] == "setid") {
        rule.owner.setid = true;
      } else if (words[w] == "devices") {
        rule.owner.devices = true;
      } else if (words[w].rfind("root=", 0) == 0) {
        rule.root = words[w].substr(5);
        if (rule.root.empty() || rule.root[0] != '/' || rule.root.find("..") != std::string::npos)
          return Status(EINVAL, where + ": root must be an absolute path inside the tree without '..'");
      } else if (words[w] == "read-only" || words[w] == "ro") {
        rule.read_only = true;
      } else if (words[w] == "read-write" || words[w] == "rw") {
        rule.read_only = false;
      } else if (words[w] == "snapshot") {
        rule.snapshot = true;
      } else {
        return Status(EINVAL, where + ": unknown access word '" + words[w] +
                                  "' (use root=/path, read-only, read-write, snapshot, uid=N, gid=N, "
                                  "root-squash, no-root-squash, setid or devices)");
      }
    }
    if (c.server.access.count(words[0]))
      return Status(EINVAL, where + ": a second access rule for '" + words[0] + "'");
    c.server.access[words[0]] = rule;
  } else if (key == "commit-interval-ms") {
    uint64_t v;
    MUSCLE_RETURN_IF_ERROR(number(1, 60000, v));
    c.server.commit_interval = std::chrono::milliseconds(v);
  } else if (key == "store-readers") {
    uint64_t v;
    MUSCLE_RETURN_IF_ERROR(number(0, 16, v));
    c.server.store_readers = int(v);
  } else if (key == "chunks") {
    if (value != "local") {
      auto url = s3::ParseBucketUrl(value);
      if (!url.ok())
        return Status(EINVAL, where + ": chunks must be local or s3://BUCKET[/PREFIX]: " +
                                  url.status().message());
    }
    c.server.chunks.url = value == "local" ? "" : value;
  } else if (key == "key-file" || key == "passphrase-file" || key == "new-passphrase-file") {
    if (value.empty()) return Status(EINVAL, where + ": " + key + " needs a file name");
    if (key == "new-passphrase-file" && from_file)
      return Status(EINVAL, where + ": new-passphrase-file is a flag of musclefs key add and rotate only");
    (key == "key-file"          ? c.server.key.key_file
     : key == "passphrase-file" ? c.server.key.passphrase_file
                                : c.server.key.new_passphrase_file) = value;
  } else if (key == "s3-endpoint") {
    c.server.chunks.endpoint = value;
  } else if (key == "s3-region") {
    if (value.empty()) return Status(EINVAL, where + ": s3-region needs a region name");
    c.server.chunks.region = value;
  } else if (key == "s3-addressing") {
    if (value != "auto" && value != "path" && value != "virtual-host")
      return Status(EINVAL, where + ": s3-addressing must be auto, path or virtual-host, got '" + value + "'");
    c.server.chunks.addressing = value;
  } else if (key == "s3-credentials") {
    c.server.chunks.credentials = value;
  } else if (key == "cache-size") {
    auto v = ParseByteSize(value);
    if (!v.ok()) return Status(EINVAL, where + ": cache-size: " + v.status().message());
    c.server.chunks.cache_size = *v;
  } else if (key == "snapshot-every") {
    // A duration: N followed by s, m, h or d; "off" or 0 disables.
    char* end = nullptr;
    unsigned long long v = strtoull(value.c_str(), &end, 10);
    uint64_t unit = 0;
    if (value == "off" || value == "0") unit = 1, v = 0;
    else if (end && end != value.c_str() && end[0] && !end[1])
      unit = end[0] == 's' ? 1 : end[0] == 'm' ? 60 : end[0] == 'h' ? 3600 : end[0] == 'd' ? 86400 : 0;
    if (unit == 0 || v * unit > 366ull * 86400 || (v && v * unit < 60))
      return Status(EINVAL, where + ": snapshot-every must be a duration of at least 1m "
                                    "(e.g. 15m, 1h, 1d) or off, got '" + value + "'");
    c.server.snapshot_every = std::chrono::seconds(v * unit);
  } else {
    return Status(EINVAL, where + ": unknown " + (from_file ? "key '" : "option '--") +
                              key + "' (see musclefs --help)");
  }
  return Status::Ok();
}

std::string ModeText(mode_t m) {
  char b[8];
  snprintf(b, sizeof b, "%04o", unsigned(m & 07777));
  return b;
}

// The file says who may connect and with what rights (listen, access), so
// like sshd's StrictModes it must be a regular file that only its owner
// (the user running musclefs, or root) can change. A missing file is fine;
// one that cannot be read is an error, not silently no settings.
Result<std::string> ReadConfigText(const std::string& path) {
  // O_NONBLOCK: a FIFO must not hang start-up before fstat refuses it.
  int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::string();
    return Status(errno, "cannot read " + path + ": " + strerror(errno));
  }
  struct stat st;
  Status bad = Status::Ok();
  if (fstat(fd, &st) != 0)
    bad = Status(errno, "cannot read " + path + ": " + strerror(errno));
  else if (!S_ISREG(st.st_mode))
    bad = Status(EINVAL, path + " is not a regular file");
  else if (st.st_uid != geteuid() && st.st_uid != 0)
    bad = Status(EPERM, path + " is owned by uid " + std::to_string(st.st_uid) +
                            ", not by the user running musclefs (uid " +
                            std::to_string(geteuid()) + ") or root; fix it with: chown " +
                            std::to_string(geteuid()) + " " + path);
  else if (st.st_mode & 022)
    bad = Status(EPERM, path + " is writable by group or others (mode " +
                            ModeText(st.st_mode) + "); fix it with: chmod go-w " + path);
  std::string text;
  char buf[4096];
  while (bad.ok()) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) bad = Status(errno, "cannot read " + path + ": " + strerror(errno));
    if (n <= 0) break;
    text.append(buf, size_t(n));
    if (text.size() > (1 << 20)) bad = Status(EFBIG, path + " is larger than 1 MiB");
  }
  close(fd);
  if (!bad.ok()) return bad;
  return text;
}

Status ReadConfigFile(Config& c, const std::string& path) {
  auto text = ReadConfigText(path);
  if (!text.ok()) return text.status();
  std::istringstream in(*text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    n++;
    auto trim = [](std::string s) {
      size_t a = s.find_first_not_of(" \t\r");
      size_t b = s.find_last_not_of(" \t\r");
      return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
    };
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    std::string where = path + ":" + std::to_string(n);
    if (eq == std::string::npos)
      return Status(EINVAL, where + ": expected 'key = value'");
    MUSCLE_RETURN_IF_ERROR(
        SetKey(c, trim(line.substr(0, eq)), trim(line.substr(eq + 1)), where, true));
  }
  return Status::Ok();
}

}  // namespace

Result<Config> ParseConfig(const std::vector<std::string>& args) {
  Config c;
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    c.command = "help";
    return c;
  }
  c.command = args[0];
  if (c.command != "serve" && c.command != "check" && c.command != "gc" &&
      c.command != "upgrade" && c.command != "init" && c.command != "key" &&
      c.command != "restore-from")
    return Status(EINVAL, "unknown command '" + c.command + "' (see musclefs --help)");
  // Flags are checked here (so a bad one is reported even without a
  // config file) and applied again after the file, in order: a flag given
  // on the command line always wins, whatever its value.
  struct Given {
    std::string key, value, where;
  };
  std::vector<Given> given;
  Config flags;
  bool have_base = false;
  for (size_t i = 1; i < args.size(); i++) {
    const std::string& a = args[i];
    auto value = [&]() -> Result<std::string> {
      if (i + 1 >= args.size()) return Status(EINVAL, a + " needs a value (see musclefs --help)");
      return args[++i];
    };
    if (a == "-D") {
      c.trace = true;
    } else if (a == "--check-config") {
      if (c.command != "serve") return Status(EINVAL, "--check-config goes with serve");
      c.check_config = true;
    } else if (a == "--progress" || a == "--no-progress") {
      if (c.command != "check" && c.command != "gc" && c.command != "upgrade" && c.command != "restore-from")
        return Status(EINVAL, a + " goes with check, gc, upgrade or restore-from");
      c.progress = a == "--progress" ? 1 : -1;
    } else if (a == "--encrypt" || a == "--unattended") {
      if (a == "--encrypt" && c.command != "init" && c.command != "upgrade")
        return Status(EINVAL, "--encrypt goes with init or upgrade");
      if (a == "--unattended" && c.command != "init" && c.command != "key" && c.command != "upgrade")
        return Status(EINVAL, "--unattended goes with init --encrypt, upgrade --encrypt or key add");
      (a == "--encrypt" ? c.encrypt : c.unattended) = true;
    } else if (c.command == "key" && a.rfind("--", 0) != 0) {
      c.operands.push_back(a);
    } else if (a == "--allow-plaintext-network") {
      given.push_back({"allow-plaintext-network", "yes", "option " + a});
    } else if (a == "--help" || a == "-h") {
      c.command = "help";
      return c;
    } else if (a == "--base") {
      auto v = value();
      if (!v.ok()) return v.status();
      if (v->empty()) return Status(EINVAL, "--base needs a directory, got ''");
      c.base = *v;
      have_base = true;
    } else if (a.rfind("--", 0) == 0) {
      auto v = value();
      if (!v.ok()) return v.status();
      given.push_back({a.substr(2), *v, "option " + a});
      MUSCLE_RETURN_IF_ERROR(SetKey(flags, a.substr(2), *v, "option " + a, false));
    } else {
      return Status(EINVAL, "unexpected argument '" + a + "' (see musclefs --help)");
    }
  }
  if (!have_base) c.base = DefaultBase();
  bool key_one = !c.operands.empty() &&
                 (c.operands[0] == "rotate" || c.operands[0] == "list" || c.operands[0] == "rewrite");
  if (c.command == "key" && !(key_one && c.operands.size() == 1) &&
      (c.operands.size() != 2 ||
       (c.operands[0] != "add" && c.operands[0] != "remove" && c.operands[0] != "retire")))
    return Status(EINVAL, "usage: musclefs key add PATH | key remove PATH | key rotate | key list | "
                          "key rewrite | key retire GENERATION");
  if (c.unattended && (c.command == "init" || c.command == "upgrade") && !c.encrypt)
    return Status(EINVAL, "--unattended goes with " + c.command + " --encrypt");
  if (c.unattended && c.command == "key" && c.operands[0] != "add")
    return Status(EINVAL, "--unattended goes with key add");
  MUSCLE_RETURN_IF_ERROR(ReadConfigFile(c, c.base + "/musclefs.conf"));
  bool listen_replaced = false;
  for (const Given& g : given) {
    if (g.key == "listen" && !listen_replaced) {
      c.server.listen.clear();  // --listen replaces the file's listen lines
      listen_replaced = true;
    }
    if (g.key == "access") {
      // Replaces the file's rule for the same identity, keeps the others.
      Config one;
      MUSCLE_RETURN_IF_ERROR(SetKey(one, g.key, g.value, g.where, false));
      for (auto& [name, rule] : one.server.access) c.server.access[name] = rule;
      continue;
    }
    MUSCLE_RETURN_IF_ERROR(SetKey(c, g.key, g.value, g.where, false));
  }
  if (c.server.store_path.empty()) c.server.store_path = c.base + "/store.db";
  if (c.server.keys_path.empty()) c.server.keys_path = c.base + "/keys";
  c.server.key.default_key_file = c.base + "/store.key";
  // Plain 9P over TCP has no authentication: on loopback every local user
  // could act as any uid. The default is the unix socket (mode 0600) only.
  if (c.server.listen.empty()) c.server.listen.push_back("unix:" + c.base + "/musclefs.sock");
  return c;
}

std::vector<std::string> ListenerWarnings(const std::vector<transport::Endpoint>& eps) {
  std::vector<std::string> out;
  for (const auto& e : eps) {
    if (e.kind != transport::Endpoint::kTcp || e.tls) continue;
    if (e.IsLoopback())
      out.push_back(e.text +
                    " is plain 9P without authentication: every local user and "
                    "process on this machine can connect and act as any uid, root "
                    "included. Use the unix socket (mode 0600) or tls:// unless "
                    "every local user is trusted");
    else
      out.push_back(e.text +
                    " is plain 9P on a network address: file names and contents "
                    "cross the network unencrypted, and anyone who can reach it "
                    "can connect and act as any uid, root included");
  }
  return out;
}

std::vector<std::string> MountHints(const std::vector<transport::Endpoint>& eps,
                                    uint32_t msize) {
  std::vector<std::string> out;
  std::string opts = ",version=9p2000.L,msize=" + std::to_string(msize);
  for (const auto& e : eps) {
    if (e.tls)
      out.push_back("on a client: muscle relay --connect THIS-HOST:" + std::to_string(e.port) +
                    " --identity NAME, then mount -t 9p -o trans=unix" + opts +
                    " $HOME/lib/muscle/relay.sock /mnt; or muscle mount THIS-HOST:" + std::to_string(e.port) +
                    " /mnt --identity NAME");
    else if (e.kind == transport::Endpoint::kUnix)
      out.push_back("mount -t 9p -o trans=unix" + opts + " " + e.path + " /mnt");
    else
      out.push_back("mount -t 9p -o trans=tcp,port=" + std::to_string(e.port) + opts + " " +
                    (e.host == "0.0.0.0" || e.host == "::" ? "SERVER-ADDRESS" : e.host) +
                    " /mnt");
  }
  return out;
}

}  // namespace muscle::server
