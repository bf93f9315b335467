// muscle: the client-side and administration tool of musclefs.
//   muscle keys add|list|remove|rotate ...   manage the PSK keys file
//   muscle relay ...                         local plaintext <-> TLS-PSK
//   muscle mount SERVER:PORT DIR ...         mount through a private relay
//   muscle umount DIR
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "auth/keys.h"
#include "auth/keys_file.h"
#include "bench/bench.h"
#include "cli/stdio.h"
#include "common/file_lock.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "server/config.h"
#include "tls/ktls.h"
#include "cli/snapshots.h"
#include "tls/tls_channel.h"
#include "transport/relay.h"

using namespace muscle;

namespace {

const char* kUsage = R"(usage:
  muscle keys add NAME        create an identity with a new 32-byte secret and
                              print the line to copy into the client's keys file
  muscle keys list            identities only (never secrets)
  muscle keys remove NAME     revoke an identity (its live connections close)
  muscle keys rotate NAME     give an identity a new secret
  muscle relay --connect HOST:PORT --identity NAME [--listen ADDR] [--reconnect [--soft S]]
                              carry local plaintext 9P to a musclefs TLS port
                              (default --listen unix:$BASE/relay.sock, mode 0600)
  muscle mount HOST:PORT DIR --identity NAME [--msize N] [--aname PATH] [-o OPTS]
                 [--relay] [--reconnect [--soft S]]
                              mount with the kernel's own TLS on the socket
                              (trans=fd, no process left running); where the
                              kernel has no TLS, or with --relay, through a
                              private relay process
  --reconnect                 (relay, mount) survive network drops and server
                              restarts: requests wait while the relay redials
                              and resumes its session, or restores it on a
                              restarted server (mount: always through a relay)
  --soft S                    with --reconnect: after S seconds without the
                              server, requests fail with EIO until it is back
  muscle umount DIR
  muscle stdio [--base DIR] [--identity NAME] [--root /PATH] [--read-only]
                              carry 9P between stdin/stdout and the local server's
                              unix socket (for ssh; muscle stdio --help)
  muscle mount --ssh [USER@]HOST DIR [--base DIR] [--identity NAME] [--root /PATH]
               [--read-only] [--ssh-command CMD] [--remote-muscle PATH] [--msize N]
               [--aname PATH] [-o OPTS]
                              mount through `ssh HOST muscle stdio` (trans=fd)
  muscle snapshot [NAME] | snapshots | history PATH | diff [A [B [PATH]]]
  muscle restore SNAP PATH [--to DEST] | snapshot prune --keep-last N ...
                              snapshots of a running server's tree
                              (muscle snapshot --help)
  muscle status                where its chunk data is, how much is not yet
                              uploaded to its bucket; connections, requests
                              per identity, latency, store size, dedup ratio,
                              packs, snapshots, commit lag, low space
  muscle bench --target ADDR ...   9P load generator (muscle bench --help)

common options:
  --base DIR     base directory (default $MUSCLE_BASE, else $HOME/lib/muscle)
  --keys FILE    keys file (default $BASE/keys)
  -D             log each connection
Keys management tells a running musclefs (pid in $BASE/musclefs.pid) to reload.
)";

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> opts;
  std::vector<std::string> mount_opts;
  bool trace = false, allow_network = false, foreground = false, force_relay = false;
  bool reconnect = false;
};

Result<Args> Parse(int argc, char** argv, int from) {
  Args a;
  for (int i = from; i < argc; i++) {
    std::string s = argv[i];
    if (s == "-D") a.trace = true;
    else if (s == "--allow-plaintext-network") a.allow_network = true;
    else if (s == "--foreground") a.foreground = true;
    else if (s == "--relay") a.force_relay = true;
    else if (s == "--reconnect") a.reconnect = true;
    else if (s == "-o") {
      if (i + 1 >= argc) return Status(EINVAL, "-o needs a value");
      a.mount_opts.push_back(argv[++i]);
    } else if (s.rfind("--", 0) == 0) {
      static const char* known[] = {"--base", "--keys", "--connect", "--identity", "--listen",
                                    "--msize", "--aname", "--log", "--soft"};
      bool ok = false;
      for (auto* k : known) ok |= s == k;
      if (!ok) return Status(EINVAL, "unknown option " + s + " (see muscle --help)");
      if (i + 1 >= argc) return Status(EINVAL, s + " needs a value");
      a.opts[s.substr(2)] = argv[++i];
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

std::string Base(const Args& a) {
  auto it = a.opts.find("base");
  return it != a.opts.end() ? it->second : server::DefaultBase();
}

std::string KeysPath(const Args& a) {
  auto it = a.opts.find("keys");
  return it != a.opts.end() ? it->second : Base(a) + "/keys";
}

int Fail(const std::string& msg) {
  fprintf(stderr, "muscle: %s\n", msg.c_str());
  return 1;
}

// Signals only the live process that holds the pid file's lock: a pid
// file left behind by a crash names nobody (its pid may be reused).
void TellServer(const Args& a) {
  pid_t pid = FileLock::PidFileHolder(Base(a) + "/musclefs.pid");
  if (pid <= 0) {
    printf("no musclefs is running for %s; the keys take effect when it starts\n", Base(a).c_str());
    return;
  }
  if (kill(pid, SIGHUP) == 0)
    printf("told the running musclefs (pid %d) to reload its keys\n", int(pid));
}

int Keys(const Args& a) {
  if (a.positional.size() < 2) return Fail("keys needs a command: add, list, remove, rotate");
  const std::string& cmd = a.positional[1];
  std::string path = KeysPath(a);
  if (cmd == "list") {
    auto t = auth::KeyTable::Load(path);
    if (!t.ok()) return Fail(t.status().message());
    for (auto& id : (*t)->Identities()) printf("%s\n", id.c_str());
    return 0;
  }
  if (a.positional.size() != 3) return Fail("usage: muscle keys " + cmd + " NAME");
  const std::string& name = a.positional[2];
  if (cmd == "add" || cmd == "rotate") {
    auto secret = auth::NewHexSecret();
    if (!secret.ok()) return Fail(secret.status().ToString());
    Status s = auth::PutKey(path, name, *secret, cmd == "rotate");
    if (!s.ok()) return Fail(s.message());
    printf("%s identity '%s' in %s.\n", cmd == "add" ? "added" : "new secret for", name.c_str(),
           path.c_str());
    printf("On the client, put this line in its keys file (mode 0600, e.g. %s):\n\n", "~/lib/muscle/keys");
    printf("%s:%s\n\n", name.c_str(), secret->c_str());
    printf("then run:\n  muscle relay --connect THIS-SERVER:3004 --identity %s\n"
           "or:\n  muscle mount THIS-SERVER:3004 /n/muscle --identity %s\n",
           name.c_str(), name.c_str());
    TellServer(a);
    return 0;
  }
  if (cmd == "remove") {
    Status s = auth::RemoveKey(path, name);
    if (!s.ok()) return Fail(s.message());
    printf("removed identity '%s' from %s\n", name.c_str(), path.c_str());
    TellServer(a);
    return 0;
  }
  return Fail("unknown keys command '" + cmd + "'");
}

// Sets up a relay from the options: server address, identity, key.
Result<transport::RelayOptions> RelaySetup(const Args& a, const std::string& server) {
  transport::RelayOptions o;
  MUSCLE_RETURN_IF_ERROR(transport::SplitHostPort(server, o.server_host, o.server_port));
  auto keys = auth::KeyTable::Load(KeysPath(a));
  if (!keys.ok()) return keys.status();
  auto it = a.opts.find("identity");
  if (it != a.opts.end()) {
    o.identity = it->second;
  } else if ((*keys)->size() == 1) {
    o.identity = (*keys)->Identities()[0];
  } else {
    return Status(EINVAL, "pass --identity NAME (the keys file " + KeysPath(a) + " has " +
                              std::to_string((*keys)->size()) + " identities)");
  }
  const auth::Secret* k = (*keys)->Find(o.identity);
  if (!k) return Status(ENOENT, "no identity '" + o.identity + "' in " + KeysPath(a));
  o.key = *k;
  o.reconnect = a.reconnect;
  if (auto soft = a.opts.find("soft"); soft != a.opts.end()) {
    char* end = nullptr;
    long n = strtol(soft->second.c_str(), &end, 10);
    if (soft->second.empty() || *end || n <= 0 || n > 86400)
      return Status(EINVAL, "--soft takes seconds (1 to 86400), not '" + soft->second + "'");
    if (!a.reconnect) return Status(EINVAL, "--soft needs --reconnect");
    o.soft = std::chrono::seconds(n);
  }
  return o;
}

int Relay(const Args& a) {
  auto it = a.opts.find("connect");
  if (it == a.opts.end()) return Fail("relay needs --connect HOST:PORT");
  auto o = RelaySetup(a, it->second);
  if (!o.ok()) return Fail(o.status().message());
  // The relay holds this identity's key: by default only this user (and
  // root) can reach it, through a unix socket of mode 0600. A TCP port,
  // even on 127.0.0.1, lets every local user act as the identity.
  std::string listen = a.opts.count("listen") ? a.opts.at("listen") : "unix:" + Base(a) + "/relay.sock";
  if (!a.opts.count("listen")) MakeDirs(Base(a), 0700);
  auto ep = transport::ParseEndpoint(listen.find("://") == std::string::npos &&
                                             listen.rfind("unix:", 0) != 0
                                         ? "tcp://" + listen
                                         : listen);
  if (!ep.ok()) return Fail(ep.status().message());
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t* loop = uv_default_loop();
  transport::Relay relay(loop);
  std::string identity = o->identity;
  Status s = relay.Init(std::move(*o));
  if (!s.ok()) return Fail(s.message());
  s = relay.Probe();
  if (!s.ok()) return Fail(s.message());
  s = relay.Listen(*ep, a.allow_network);
  if (!s.ok()) return Fail(s.message());
  relay.on_pair_closed = [](const std::string& e) {
    if (!e.empty()) Log("relay: %s", e.c_str());
  };
  Log("relay: %s -> %s as identity '%s' (TLS-PSK)", listen.c_str(), it->second.c_str(),
      identity.c_str());
  if (ep->kind == transport::Endpoint::kTcp)
    Log("relay: WARNING: %s is a TCP port: every local user and process that can connect to it "
        "acts as identity '%s'; the default unix socket (mode 0600) does not allow that",
        listen.c_str(), identity.c_str());
  if (ep->kind == transport::Endpoint::kTcp)
    Log("relay: mount with: mount -t 9p -o trans=tcp,port=%d,version=9p2000.L,msize=1048576 %s /mnt",
        ep->port, ep->host.c_str());
  else
    Log("relay: mount with: mount -t 9p -o trans=unix,version=9p2000.L,msize=1048576 %s /mnt",
        ep->path.c_str());
  uv_signal_t term;
  uv_signal_init(loop, &term);
  term.data = &relay;
  uv_signal_start(&term, [](uv_signal_t* h, int) {
    static_cast<transport::Relay*>(h->data)->Stop();
    uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
  }, SIGTERM);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}

// The options for mount -t 9p on descriptor fd.
std::string MountOptions(const Args& a, int fd) {
  std::string msize = a.opts.count("msize") ? a.opts.at("msize") : "1048576";
  std::string opts = "trans=fd,rfdno=" + std::to_string(fd) + ",wfdno=" + std::to_string(fd) +
                     ",version=9p2000.L,msize=" + msize;
  if (a.opts.count("aname")) opts += ",aname=" + a.opts.at("aname");
  for (auto& m : a.mount_opts) opts += "," + m;
  return opts;
}

// Runs mount(8) with descriptor fd open; true when it succeeded.
bool RunMount(const Args& a, const std::string& opts) {
  pid_t m = fork();
  if (m == 0) {
    std::string source = "muscle@" + a.positional[1];
    execlp("mount", "mount", "-t", "9p", "-o", opts.c_str(), source.c_str(),
           a.positional[2].c_str(), nullptr);
    _exit(127);
  }
  int st = 0;
  waitpid(m, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// muscle mount on the kernel's TLS: the handshake here, then the socket
// itself goes to the kernel's 9p client and no process of ours stays.
// Returns 0 when mounted, 1 on a failure to report, and -1 when the
// kernel has no TLS (the caller falls back to a relay).
int MountKernelTls(const Args& a, const transport::RelayOptions& o) {
  // With a session cache the server sends a ticket, inside the handshake
  // (as TLS 1.2 does), so the kernel never sees a non-data record.
  auto ctx = tls::TlsContext::ForClient(o.identity, o.key, std::make_shared<tls::SessionCache>());
  if (!ctx.ok()) return Fail(ctx.status().message());
  auto fd = transport::ConnectTcp(o.server_host, o.server_port);
  if (!fd.ok()) return Fail(fd.status().message());
  std::string suite;
  Status s = tls::HandshakeForKernel(*fd, **ctx, &suite);
  if (!s.ok()) {
    close(*fd);
    if (s.err() == ENOENT) {
      fprintf(stderr, "muscle: kernel TLS not available (%s); mounting through a private relay\n",
              s.message().c_str());
      return -1;
    }
    return Fail("TLS handshake with " + a.positional[1] + " as identity '" + o.identity +
                "' failed: " + s.message());
  }
  std::string opts = MountOptions(a, *fd);
  bool ok = RunMount(a, opts);
  close(*fd);
  if (!ok)
    return Fail("mount -t 9p -o " + opts + " muscle@" + a.positional[1] + " " + a.positional[2] +
                " failed");
  printf("mounted %s on %s (kernel TLS, %s; no relay process); unmount with: muscle umount %s\n",
         a.positional[1].c_str(), a.positional[2].c_str(), suite.c_str(), a.positional[2].c_str());
  return 0;
}

int Mount(const Args& a) {
  if (a.positional.size() != 3) return Fail("usage: muscle mount HOST:PORT DIR --identity NAME");
  auto o = RelaySetup(a, a.positional[1]);
  if (!o.ok()) return Fail(o.status().message());
  // A socket handed to the kernel can never be redialled: a mount that
  // survives network drops goes through a relay process.
  if (!a.force_relay && !a.reconnect) {
    int rc = MountKernelTls(a, *o);
    if (rc >= 0) return rc;
  }
  std::string dir = a.positional[2];
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return Fail(std::string("socketpair: ") + strerror(errno));
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return Fail("pipe");
  pid_t pid = fork();
  if (pid < 0) return Fail("fork");
  if (pid == 0) {
    // The relay: carries the kernel's end of the socketpair over TLS until
    // the kernel closes it (at umount).
    close(sv[0]);
    close(ready[0]);
    setsid();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    uv_loop_t* loop = uv_default_loop();
    transport::Relay relay(loop);
    Status s = relay.Init(std::move(*o));
    if (s.ok()) s = relay.Probe();
    std::string msg = s.ok() ? "ok" : s.message();
    ssize_t w = write(ready[1], msg.data(), msg.size());
    (void)w;
    close(ready[1]);
    if (!s.ok()) _exit(1);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    if (a.opts.count("log")) {
      int lf = open(a.opts.at("log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (lf >= 0) dup2(lf, 2);
    } else {
      dup2(null, 2);
    }
    auto* pipe = new uv_pipe_t;
    uv_pipe_init(loop, pipe, 0);
    uv_pipe_open(pipe, sv[1]);
    relay.on_pair_closed = [](const std::string& e) {
      if (!e.empty()) Log("relay: %s", e.c_str());
    };
    relay.Carry(reinterpret_cast<uv_stream_t*>(pipe));
    uv_run(loop, UV_RUN_DEFAULT);
    _exit(0);
  }
  close(sv[1]);
  close(ready[1]);
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = read(ready[0], buf, sizeof buf)) > 0) msg.append(buf, size_t(n));
  close(ready[0]);
  if (msg != "ok") {
    waitpid(pid, nullptr, 0);
    return Fail(msg.empty() ? "relay failed to start" : msg);
  }
  std::string opts = MountOptions(a, sv[0]);
  bool mounted = RunMount(a, opts);
  close(sv[0]);
  if (!mounted) {
    kill(pid, SIGTERM);
    return Fail("mount -t 9p -o " + opts + " muscle@" + a.positional[1] + " " + dir + " failed");
  }
  printf("mounted %s on %s (relay pid %d); unmount with: muscle umount %s\n",
         a.positional[1].c_str(), dir.c_str(), int(pid), dir.c_str());
  return 0;
}

int Umount(const Args& a) {
  if (a.positional.size() != 2) return Fail("usage: muscle umount DIR");
  pid_t m = fork();
  if (m == 0) {
    execlp("umount", "umount", a.positional[1].c_str(), nullptr);
    _exit(127);
  }
  int st = 0;
  waitpid(m, &st, 0);
  // The relay exits by itself when the kernel closes its end.
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  SetLogName("muscle");
  if (!strcmp(argv[1], "bench")) return bench::BenchMain(argc - 2, argv + 2);
  if (!strcmp(argv[1], "stdio")) return cli::StdioMain(argc - 2, argv + 2);
  if (cli::WantsSshMount(argc, argv)) return cli::SshMountMain(argc - 2, argv + 2);
  if (cli::IsSnapshotCommand(argv[1])) return cli::SnapshotMain(argc - 1, argv + 1);
  auto a = Parse(argc, argv, 1);
  if (!a.ok()) return Fail(a.status().message());
  SetTraceEnabled(a->trace);
  std::string cmd = a->positional.empty() ? "" : a->positional[0];
  if (cmd == "keys") return Keys(*a);
  if (cmd == "relay") return Relay(*a);
  if (cmd == "mount") return Mount(*a);
  if (cmd == "umount") return Umount(*a);
  return Fail("unknown command '" + cmd + "' (see muscle --help)");
}
