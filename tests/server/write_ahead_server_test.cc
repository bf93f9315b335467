// Twrites answered ahead of the writer (server/write_ahead.h), end to
// end: what one connection pipelined and had acknowledged, another reads
// back whole.
#include <fcntl.h>

#include <catch2/catch.hpp>
#include <string>

#include "9p/client.h"
#include "tests/server/server_harness.h"

using namespace muscle;
using namespace muscle::test;

TEST_CASE("write ahead: pipelined writes on one connection are read back whole on another") {
  TempDir dir;
  InProcessServer srv(dir.path + "/store.db", dir.path, 65536 + p9::kIoHeaderSize);
  p9::Client a, b;
  REQUIRE(a.Connect(srv.unix_endpoint()).ok());
  REQUIRE(a.Version(65536 + p9::kIoHeaderSize).ok());
  REQUIRE(a.Attach(0).ok());
  REQUIRE(a.Walk(0, 1, {}).ok());
  REQUIRE(a.Create(1, "f", O_RDWR, 0644).ok());
  constexpr size_t kPiece = 65536, kPieces = 256;  // 16 MiB
  REQUIRE(a.Write(1, 0, "old").ok());
  REQUIRE(a.Fsync(1).ok());  // committed: the file is clean again
  std::string data = RandomBytes(kPiece * kPieces, 3);
  for (size_t i = 0; i < kPieces; i++)
    REQUIRE(a.Send(uint16_t(i + 1), p9::Twrite{1, i * kPiece, p9::Data{data.substr(i * kPiece, kPiece)}}).ok());
  for (size_t i = 0; i < kPieces; i++) {
    auto r = a.Receive();
    REQUIRE(r.ok());
    REQUIRE(std::get_if<p9::Rwrite>(&*r));
  }
  // Every write acknowledged: another connection reads all of it.
  REQUIRE(b.Connect(srv.unix_endpoint()).ok());
  REQUIRE(b.Version(65536 + p9::kIoHeaderSize).ok());
  REQUIRE(b.Attach(0).ok());
  REQUIRE(b.Walk(0, 1, {"f"}).ok());
  REQUIRE(b.Open(1, O_RDONLY).ok());
  auto got = b.ReadAll(1);
  REQUIRE(got.ok());
  CHECK(got->size() == data.size());
  CHECK(*got == data);
}
