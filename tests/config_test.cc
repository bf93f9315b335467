#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "server/config.h"
#include "server_harness_lite.h"

using namespace muscle;
using namespace muscle::server;

TEST_CASE("defaults come from the base directory") {
  TempBase base;
  auto c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(c.ok());
  CHECK(c->server.store_path == base.path + "/store.db");
  REQUIRE(c->server.listen.size() == 2);
  CHECK(c->server.listen[0] == "unix:" + base.path + "/musclefs.sock");
  CHECK(c->server.listen[1] == "tcp://127.0.0.1:5640");
  setenv("MUSCLE_BASE", base.path.c_str(), 1);
  CHECK(ParseConfig({"serve"})->base == base.path);
  unsetenv("MUSCLE_BASE");
}

TEST_CASE("config file values, overridden by flags") {
  TempBase base;
  std::ofstream(base.path + "/musclefs.conf")
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
  TempBase base;
  std::ofstream(base.path + "/musclefs.conf") << "store = a\nbogus line\n";
  auto c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(!c.ok());
  CHECK(c.status().message().find("musclefs.conf:2") != std::string::npos);
  std::ofstream(base.path + "/musclefs.conf") << "msize = 12\n";
  c = ParseConfig({"serve", "--base", base.path});
  REQUIRE(!c.ok());
  CHECK(c.status().message().find("msize") != std::string::npos);
  auto f = ParseConfig({"serve", "--base", base.path, "--frobnicate", "1"});
  REQUIRE(!f.ok());
  CHECK(f.status().message().find("--frobnicate") != std::string::npos);
  CHECK(!ParseConfig({"serve", "--store"}).ok());
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
  TempBase base;
  std::ofstream(base.path + "/musclefs.conf")
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
