// Tonce (9p/messages.h) through a running server: the identity is the
// connection's (here a claim on the unix socket), and a request resent
// with its id after the server was stopped and started again on the same
// store is answered from the reply recorded the first time.
#include <catch2/catch.hpp>

#include <memory>

#include "9p/client.h"
#include "9p/codec.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

// The reply to `inner` sent inside a Tonce with id `op`, or its error.
Result<Message> Once(Client& c, uint64_t op, const Message& inner) {
  std::string frame;
  Encode(0, inner, frame);
  return c.Rpc(Tonce{op, Data{frame}});
}

// A client of `identity` (a claim), attached with fid 0 to the root.
std::unique_ptr<Client> As(const std::string& ep, const std::string& identity) {
  auto c = std::make_unique<Client>();
  REQUIRE(c->Connect(ep).ok());
  REQUIRE(SendClaim(*c, "muscle-claim identity=" + identity + "\n") == "ok");
  REQUIRE(c->Version().ok());
  REQUIRE(c->Attach(0).ok());
  return c;
}

}  // namespace

TEST_CASE("Tonce through a server: answered from its record after a restart, per identity") {
  TempDir dir;
  server::ServerOptions o;
  o.store_path = dir.path + "/store.db";
  o.listen = {"unix:" + dir.path + "/sock"};
  o.access["laptop"] = server::AccessRule{};
  o.access["phone"] = server::AccessRule{};
  o.access["ro"] = server::AccessRule{"", true, false};
  Qid made;
  {
    InProcessServer srv(o);
    std::string ep = "unix:" + srv.endpoints()[0].path;
    auto laptop = As(ep, "laptop");
    auto r = Once(*laptop, 42, Tmkdir{0, "d", 0755, 0});
    REQUIRE(r.ok());
    REQUIRE(std::holds_alternative<Rmkdir>(*r));
    made = std::get<Rmkdir>(*r).qid;
    // Not even tried for a read-only identity.
    auto ro = As(ep, "ro");
    CHECK(Once(*ro, 43, Tmkdir{0, "e", 0755, 0}).status().err() == EROFS);
    // Another identity's id 42 is its own: it runs.
    auto phone = As(ep, "phone");
    CHECK(Once(*phone, 42, Tmkdir{0, "d", 0755, 0}).status().err() == EEXIST);
    srv.Stop();
  }
  InProcessServer srv(o);
  std::string ep = "unix:" + srv.endpoints()[0].path;
  auto laptop = As(ep, "laptop");
  auto again = Once(*laptop, 42, Tmkdir{0, "d", 0755, 0});
  REQUIRE(again.ok());
  REQUIRE(std::holds_alternative<Rmkdir>(*again));
  CHECK(std::get<Rmkdir>(*again).qid == made);
  CHECK(Once(*laptop, 44, Tmkdir{0, "d", 0755, 0}).status().err() == EEXIST);
  // What the frame inside may not be.
  std::string read;
  Encode(0, Tread{0, 0, 10}, read);
  CHECK(laptop->Rpc(Tonce{45, Data{read}}).status().err() == EINVAL);
  CHECK(laptop->Rpc(Tonce{46, Data{read.substr(0, 9)}}).status().err() == EINVAL);
}
