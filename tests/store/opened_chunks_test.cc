// The opened chunks an encrypted store's writer and readers share
// (store/opened_chunks.h): one thread opens, the others wait and share its
// bytes; a failed open hands the claim on; Clear forgets claims in flight.
#include "store/opened_chunks.h"

#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

using namespace muscle::store;

namespace {

OpenedChunks::Data Bytes(const char* s) {
  std::shared_ptr<char[]> d = std::make_shared_for_overwrite<char[]>(strlen(s));
  memcpy(d.get(), s, strlen(s));
  return d;
}

}  // namespace

TEST_CASE("opened chunks: the first asker opens, the others wait for its bytes", "[sealed]") {
  OpenedChunks kept(4);
  ChunkLocation at{1, 36};
  auto first = kept.Find(at, 5);
  REQUIRE(!first.data);
  REQUIRE(first.claim != 0);
  std::atomic<bool> got{false};
  OpenedChunks::Found second;
  std::thread waiter([&] {
    second = kept.Find(at, 5);
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(!got);  // waiting, not claiming it a second time
  unsigned char name[32];
  memset(name, 7, 32);
  kept.Fill(first.claim, name, Bytes("hello"));
  waiter.join();
  REQUIRE(second.data);
  CHECK(std::string(second.data.get(), 5) == "hello");
  CHECK(second.claim == 0);
  CHECK(memcmp(second.name, name, 32) == 0);
  // Another size at the same place is another record.
  auto other = kept.Find(at, 6);
  CHECK(!other.data);
  kept.Abandon(other.claim);
}

TEST_CASE("opened chunks: a failed open hands the claim to a waiter; Clear voids claims",
          "[sealed]") {
  OpenedChunks kept(4);
  ChunkLocation at{2, 36};
  auto first = kept.Find(at, 5);
  REQUIRE(first.claim != 0);
  OpenedChunks::Found second;
  std::thread waiter([&] { second = kept.Find(at, 5); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  kept.Abandon(first.claim);
  waiter.join();
  CHECK(!second.data);
  REQUIRE(second.claim != 0);
  // A roll-back while it is being opened: its bytes may be the old
  // record's, so they are not kept.
  kept.Clear();
  unsigned char name[32] = {};
  kept.Fill(second.claim, name, Bytes("stale"));
  auto third = kept.Find(at, 5);
  CHECK(!third.data);
  kept.Abandon(third.claim);
}

TEST_CASE("opened chunks: least recently used out, claims in flight kept", "[sealed]") {
  OpenedChunks kept(2);
  unsigned char name[32] = {};
  for (uint64_t c = 1; c <= 3; c++) {
    auto f = kept.Find({c, 36}, 1);
    REQUIRE(f.claim);
    kept.Fill(f.claim, name, Bytes("x"));
  }
  auto one = kept.Find({1, 36}, 1);  // the oldest went
  CHECK(!one.data);
  auto three = kept.Find({3, 36}, 1);
  CHECK(three.data);
  kept.Abandon(one.claim);
}
