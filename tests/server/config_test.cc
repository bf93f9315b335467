#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "server/config.h"
#include "tests/test_util.h"

using namespace muscle;
using namespace muscle::server;
using namespace muscle::test;

namespace {
// Writes $BASE/musclefs.conf with mode 0644 whatever the umask (a group-
// or world-writable file is refused).
struct ConfFile {
  explicit ConfFile(const TempDir& b) : path(b.path + "/musclefs.conf"), out(path) {}
  ~ConfFile() {
    out.close();
    chmod(path.c_str(), 0644);
  }
  template <class T>
  ConfFile& operator<<(const T& v) {
    out << v;
    return *this;
  }
  std::string path;
  std::ofstream out;
};
}  // namespace

TEST_CASE("defaults come from the base directory") {
  TempDir base;
  auto c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(c.ok());
  CHECK(c->server.store_path == base.path + "/store.db");
  // Only the unix socket (mode 0600): a loopback TCP port would let every
  // local user in as any uid, so it is opened only when asked for.
  CHECK(c->server.listen == std::vector<std::string>{"unix:" + base.path + "/musclefs.sock"});
  setenv("MUSCLE_BASE", base.path.c_str(), 1);
  CHECK(ParseConfig({"serve"})->base == base.path);
  unsetenv("MUSCLE_BASE");
}

TEST_CASE("config file values, overridden by flags") {
  TempDir base;
  ConfFile(base)
      << "# comment\nstore = /x/y.db\nlisten = tcp://127.0.0.1:1\nlisten = unix:/s\n"
         "msize = 65536\n";
  auto c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(c.ok());
  CHECK(c->server.store_path == "/x/y.db");
  CHECK(c->server.listen.size() == 2);
  CHECK(c->server.max_msize == 65536);
  auto d = ParseConfig({"serve", "--base", base.path, "--listen", "unix:/t", "--store", ":memory:"});
  REQUIRE(d.ok());
  CHECK(d->server.listen == std::vector<std::string>{"unix:/t"});
  CHECK(d->server.store_path == ":memory:");
}

TEST_CASE("errors name the file and line or the flag") {
  TempDir base;
  ConfFile(base) << "store = a\nbogus line\n";
  auto c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(!c.ok());
  CHECK(c.status().message().find("musclefs.conf:2") != std::string::npos);
  ConfFile(base) << "msize = 12\n";
  c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(!c.ok());
  CHECK(c.status().message().find("msize") != std::string::npos);
  auto f = ParseConfig({"serve", "--base", base.path, "--frobnicate", "1"});
  REQUIRE(!f.ok());
  CHECK(f.status().message().find("--frobnicate") != std::string::npos);
  CHECK(!ParseConfig({"serve", "--store"}).ok());
  // An empty --base would put the store, socket and config file in "/".
  auto eb = ParseConfig({"serve", "--base", ""});
  REQUIRE(!eb.ok());
  CHECK(eb.status().message().find("--base") == 0);
  ConfFile(base) << "\nlisten = tcp://127.0.0.1\n";
  c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(!c.ok());
  CHECK(c.status().message().find("musclefs.conf:2: bad address 'tcp://127.0.0.1'") == base.path.size() + 1);
  ConfFile(base) << "";
  auto l = ParseConfig({"serve", "--base", base.path, "--listen", "udp://x:1"});
  REQUIRE(!l.ok());
  CHECK(l.status().message().find("option --listen: bad address 'udp://x:1'") == 0);
  CHECK(!ParseConfig({"dance"}).ok());
  CHECK(ParseConfig({})->command == "help");
  CHECK(ParseConfig({"serve", "--help"})->command == "help");
}

TEST_CASE("endpoints parse and plaintext on a network address is refused") {
  auto u = transport::ParseEndpoint("unix:/run/m.sock");
  REQUIRE(u.ok());
  CHECK(u->IsLoopback());
  auto t = transport::ParseEndpoint("tcp://127.0.0.1:5640");
  REQUIRE(t.ok());
  CHECK(t->IsLoopback());
  CHECK(transport::ParseEndpoint("tcp://[::1]:99")->IsLoopback());
  CHECK(!transport::ParseEndpoint("tcp://0.0.0.0:99")->IsLoopback());
  CHECK(!transport::ParseEndpoint("tcp://10.1.2.3:99")->IsLoopback());
  CHECK(!transport::ParseEndpoint("tcp://host").ok());
  CHECK(!transport::ParseEndpoint("tcp://host:99999").ok());
  CHECK(!transport::ParseEndpoint("udp://x:1").ok());
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto l = transport::Listener::Open(&loop, *transport::ParseEndpoint("tcp://0.0.0.0:0"), false,
                                     [](uv_stream_t*, std::string) {});
  REQUIRE(!l.ok());
  CHECK(l.status().message().find("--allow-plaintext-network") != std::string::npos);
  auto forced = transport::Listener::Open(&loop, *transport::ParseEndpoint("tcp://0.0.0.0:0"),
                                          true, [](uv_stream_t*, std::string) {});
  REQUIRE(forced.ok());
  (*forced)->Close();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("TLS settings: file values, flag overrides, ranges") {
  TempDir base;
  ConfFile(base)
      << "tls-ticket-lifetime = 0\nmax-failed-handshakes = 3\nhandshake-timeout-ms = 500\n";
  auto c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(c.ok());
  CHECK(c->server.ticket_lifetime_seconds == 0);
  CHECK(c->server.max_failed_handshakes == 3);
  CHECK(c->server.handshake_timeout == std::chrono::milliseconds(500));
  auto d = ParseConfig({"serve", "--base", base.path, "--tls-ticket-lifetime", "600"});
  REQUIRE(d.ok());
  CHECK(d->server.ticket_lifetime_seconds == 600);
  auto bad = ParseConfig({"serve", "--base", base.path, "--tls-ticket-lifetime", "99999999"});
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("tls-ticket-lifetime must be a number from 0 to 86400") !=
        std::string::npos);
}

TEST_CASE("a flag on the command line wins over the file, also when it equals the default") {
  TempDir base;
  ConfFile(base)
      << "msize = 65536\ncommit-interval-ms = 5000\nhandshake-timeout-ms = 500\n"
         "max-failed-handshakes = 3\ntls-ticket-lifetime = 0\nkeys = /file/keys\n"
         "store = /file/store.db\nlisten = tcp://127.0.0.1:1\n"
         "access = alice read-only\naccess = bob root=/b\n";
  auto file = ParseConfig({"serve", "--base", base.path});
  REQUIRE(file.ok());
  CHECK(file->server.max_msize == 65536);
  CHECK(file->server.commit_interval == std::chrono::milliseconds(5000));
  // Each flag set to its built-in default.
  auto c = ParseConfig({"serve", "--base", base.path, "--msize", "1048576",
                        "--commit-interval-ms", "1000", "--handshake-timeout-ms", "10000",
                        "--max-failed-handshakes", "10", "--tls-ticket-lifetime", "3600",
                        "--keys", base.path + "/keys", "--store", base.path + "/store.db",
                        "--listen", "unix:" + base.path + "/musclefs.sock",
                        "--access", "alice"});
  REQUIRE(c.ok());
  CHECK(c->server.max_msize == 1048576);
  CHECK(c->server.commit_interval == std::chrono::milliseconds(1000));
  CHECK(c->server.handshake_timeout == std::chrono::milliseconds(10000));
  CHECK(c->server.max_failed_handshakes == 10);
  CHECK(c->server.ticket_lifetime_seconds == 3600);
  CHECK(c->server.keys_path == base.path + "/keys");
  CHECK(c->server.store_path == base.path + "/store.db");
  CHECK(c->server.listen == std::vector<std::string>{"unix:" + base.path + "/musclefs.sock"});
  // --access replaces the file's rule for that identity and keeps the others.
  REQUIRE(c->server.access.count("alice"));
  CHECK(!c->server.access["alice"].read_only);
  REQUIRE(c->server.access.count("bob"));
  CHECK(c->server.access["bob"].root == "/b");
  // Flags that are not given leave the file's values alone.
  auto d = ParseConfig({"serve", "--base", base.path, "--msize", "8192"});
  REQUIRE(d.ok());
  CHECK(d->server.max_msize == 8192);
  CHECK(d->server.commit_interval == std::chrono::milliseconds(5000));
  CHECK(d->server.listen == std::vector<std::string>{"tcp://127.0.0.1:1"});
  // Two --access rules for one identity are still an error, naming the flag.
  auto e = ParseConfig({"serve", "--base", base.path, "--access", "carol", "--access", "carol ro"});
  REQUIRE(!e.ok());
  CHECK(e.status().message().find("option --access") != std::string::npos);
}

TEST_CASE("startup warnings name every plain TCP listener") {
  auto eps = [](std::vector<std::string> texts) {
    std::vector<transport::Endpoint> out;
    for (auto& t : texts) out.push_back(*transport::ParseEndpoint(t));
    return out;
  };
  CHECK(ListenerWarnings(eps({"unix:/s", "tls://0.0.0.0:3004"})).empty());
  auto w = ListenerWarnings(eps({"unix:/s", "tcp://127.0.0.1:5640", "tcp://0.0.0.0:99"}));
  REQUIRE(w.size() == 2);
  CHECK(w[0].find("tcp://127.0.0.1:5640") == 0);
  CHECK(w[0].find("every local user") != std::string::npos);
  CHECK(w[1].find("tcp://0.0.0.0:99") == 0);
  CHECK(w[1].find("network") != std::string::npos);
}

TEST_CASE("the config file must be a regular file only its owner can change") {
  TempDir base;
  std::string conf = base.path + "/musclefs.conf";
  // A FIFO used to hang start-up (std::ifstream blocks opening it).
  REQUIRE(mkfifo(conf.c_str(), 0600) == 0);
  auto f = ParseConfig({"serve", "--base", base.path});
  REQUIRE(!f.ok());
  CHECK(f.status().message() == conf + " is not a regular file");
  unlink(conf.c_str());
  REQUIRE(mkdir(conf.c_str(), 0700) == 0);
  CHECK(!ParseConfig({"serve", "--base", base.path}).ok());
  rmdir(conf.c_str());
  // Anyone who can write it can open a listener or lift a read-only rule.
  ConfFile(base) << "access = alice read-only\n";
  REQUIRE(chmod(conf.c_str(), 0664) == 0);
  auto w = ParseConfig({"serve", "--base", base.path});
  REQUIRE(!w.ok());
  CHECK(w.status().message() ==
        conf + " is writable by group or others (mode 0664); fix it with: chmod go-w " + conf);
  REQUIRE(chmod(conf.c_str(), 0644) == 0);
  auto ok = ParseConfig({"serve", "--base", base.path});
  REQUIRE(ok.ok());
  CHECK(ok->server.access["alice"].read_only);
  if (geteuid() == 0) {
    // Owned by someone else (root running the tests can arrange that).
    REQUIRE(chown(conf.c_str(), 65534, 65534) == 0);
    auto o = ParseConfig({"serve", "--base", base.path});
    REQUIRE(!o.ok());
    CHECK(o.status().message().find("is owned by uid 65534") != std::string::npos);
    REQUIRE(chown(conf.c_str(), 0, 0) == 0);
  } else {  // (root reads any file: only another user can test this)
    // A file that exists but cannot be read is an error, not "no settings"
    // (the read-only rule above would silently vanish).
    REQUIRE(chmod(conf.c_str(), 0200) == 0);
    auto u = ParseConfig({"serve", "--base", base.path});
    REQUIRE(!u.ok());
    CHECK(u.status().message().find("cannot read " + conf) == 0);
  }
}

TEST_CASE("snapshot settings: snapshot-every durations and the access word") {
  TempDir base;
  ConfFile(base) << "snapshot-every = 15m\naccess = alice root=/a snapshot\naccess = bob read-only\n";
  auto c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(c.ok());
  CHECK(c->server.snapshot_every == std::chrono::seconds(900));
  CHECK(c->server.access["alice"].snapshot);
  CHECK(c->server.access["alice"].root == "/a");
  CHECK(!c->server.access["bob"].snapshot);
  for (auto [flag, secs] : std::vector<std::pair<const char*, int64_t>>{
           {"2h", 7200}, {"1d", 86400}, {"off", 0}, {"0", 0}, {"90s", 90}}) {
    INFO(flag);
    auto d = ParseConfig({"serve", "--base", base.path, "--snapshot-every", flag});
    REQUIRE(d.ok());
    CHECK(d->server.snapshot_every == std::chrono::seconds(secs));
  }
  for (const char* bad : {"30s", "15", "15x", "m", "-1m", "400d", ""}) {
    INFO(bad);
    CHECK(!ParseConfig({"serve", "--base", base.path, "--snapshot-every", bad}).ok());
  }
}

TEST_CASE("access rules say whose files an identity makes: squash by default, uid=, gid=, setid, devices") {
  TempDir base;
  ConfFile(base) << "access = alice\n"
                    "access = bob uid=1500 gid=1600\n"
                    "access = carol no-root-squash setid devices\n";
  auto c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(c.ok());
  CHECK(c->server.access["alice"].owner == auth::OwnerRule::Remote());
  auto bob = c->server.access["bob"].owner;
  CHECK(bob.uid == 1500u);
  CHECK(bob.gid == 1600u);
  CHECK(bob.squash_root);
  CHECK(!bob.setid);
  auto carol = c->server.access["carol"].owner;
  CHECK(!carol.squash_root);
  CHECK(carol.setid);
  CHECK(carol.devices);
  CHECK(!carol.uid);
  for (const char* bad : {"uid=", "uid=alice", "uid=-1", "uid=4294967295", "gid=1x", "uid=99999999999"}) {
    INFO(bad);
    auto d = ParseConfig({"serve", "--base", base.path, "--access", std::string("dave ") + bad});
    REQUIRE(!d.ok());
    CHECK(d.status().message().find("needs a number") != std::string::npos);
  }
}
