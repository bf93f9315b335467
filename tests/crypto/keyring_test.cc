// The keyring (crypto/keyring.h): generations by container number, sealed
// under the current key, naming kept from generation 1, retiring, and
// refusal of a keyring altered, relabelled, from another store or opened
// with another key.
#include <catch2/catch.hpp>
#include <string>

#include "crypto/keyring.h"
#include "crypto/seal.h"

using namespace muscle;
using namespace muscle::crypto;

namespace {

MasterKey Fill(char c) { return std::move(*MasterKey::FromBytes(std::string(32, c))); }

std::string KeyHex(const Key& k) {
  return std::string(reinterpret_cast<const char*>(k.bytes().data()), kKeyBytes);
}

}  // namespace

TEST_CASE("keyring: generations by container, naming from generation 1, sealed round trip", "[keyring]") {
  MasterKey k1 = Fill('a'), k2 = Fill('b'), k3 = Fill('c');
  Keyring r1 = Keyring::First(k1);
  CHECK(r1.current().number == 1);
  CHECK(r1.current().first == 0);
  CHECK(r1.ForContainer(12345).number == 1);
  auto r2 = r1.Rotated(k2, 5);
  REQUIRE(r2.ok());
  auto r3 = r2->Rotated(k3, 9);
  REQUIRE(r3.ok());
  CHECK(r3->current().id == KeyIdOf(k3));
  CHECK(r3->ForContainer(0).number == 1);
  CHECK(r3->ForContainer(4).number == 1);
  CHECK(r3->ForContainer(5).number == 2);
  CHECK(r3->ForContainer(8).number == 2);
  CHECK(r3->ForContainer(9).number == 3);
  CHECK(r3->ForContainer(UINT64_MAX).number == 3);
  CHECK(r3->EndOf(1) == 5);
  CHECK(r3->EndOf(2) == 9);
  CHECK(r3->EndOf(3) == UINT64_MAX);
  // A generation may not start before the current one; a key only once.
  CHECK(r3->Rotated(Fill('d'), 8).status().err() == EINVAL);
  CHECK(r3->Rotated(k2, 20).status().err() == EINVAL);
  // Naming stays generation 1's whatever the rotations.
  CHECK(KeyHex(r3->chunk_id_key()) == KeyHex(ChunkIdKey(k1)));
  CHECK(r3->gear() == DeriveGearTable(k1));

  auto sealed = r3->Seal("store-1");
  REQUIRE(sealed.ok());
  CHECK(sealed->find(KeyIdOf(k3).Hex()) != std::string::npos);
  CHECK(Keyring::SealedUnder(*sealed)->Hex() == KeyIdOf(k3).Hex());
  auto back = Keyring::Open(*sealed, k3, "store-1");
  INFO(back.status().ToString());
  REQUIRE(back.ok());
  REQUIRE(back->generations().size() == 3);
  for (size_t i = 0; i < 3; i++) {
    CHECK(back->generations()[i].number == r3->generations()[i].number);
    CHECK(back->generations()[i].first == r3->generations()[i].first);
    CHECK(back->generations()[i].id == r3->generations()[i].id);
    REQUIRE(back->generations()[i].key);
    CHECK(KeyIdOf(*back->generations()[i].key) == r3->generations()[i].id);
  }
  CHECK(KeyHex(back->chunk_id_key()) == KeyHex(ChunkIdKey(k1)));
  CHECK(back->gear() == DeriveGearTable(k1));
  // No key in the clear.
  std::string raw(32, 'a');
  CHECK(sealed->find(raw) == std::string::npos);
}

TEST_CASE("keyring: refused when opened with an older key, altered, relabelled or another store's",
          "[keyring]") {
  MasterKey k1 = Fill('a'), k2 = Fill('b');
  auto r2 = Keyring::First(k1).Rotated(k2, 3);
  REQUIRE(r2.ok());
  auto sealed = r2->Seal("store-1");
  REQUIRE(sealed.ok());
  // The older key opens nothing: the keyring is sealed under the current one.
  auto old = Keyring::Open(*sealed, k1, "store-1");
  CHECK(old.status().err() == EACCES);
  CHECK(old.status().message().find(KeyIdOf(k2).Hex()) != std::string::npos);
  CHECK(Keyring::Open(*sealed, k2, "store-2").status().err() == EIO);
  for (size_t at : {sealed->size() - 1, sealed->size() - 30, sealed->find('\n') + 5}) {
    std::string bad = *sealed;
    bad[at] ^= 1;
    CHECK(Keyring::Open(bad, k2, "store-1").status().err() == EIO);
  }
  // The generation in the header is bound into the seal.
  std::string relabelled = *sealed;
  size_t gen = relabelled.find('\n') - 1;
  REQUIRE(relabelled[gen] == '2');
  relabelled[gen] = '3';
  CHECK(Keyring::Open(relabelled, k2, "store-1").status().err() == EIO);
  CHECK(Keyring::Open(sealed->substr(0, 60), k2, "store-1").ok() == false);
  CHECK(Keyring::Open("musclefs keyring 1 zz 1\n", k2, "store-1").status().err() == EINVAL);
}

TEST_CASE("keyring: retiring drops a key, keeps its range and the naming, never the current one",
          "[keyring]") {
  MasterKey k1 = Fill('a'), k2 = Fill('b');
  auto r2 = Keyring::First(k1).Rotated(k2, 7);
  REQUIRE(r2.ok());
  CHECK(r2->Retired(2).status().err() == EINVAL);
  CHECK(r2->Retired(3).status().err() == EINVAL);
  auto r = r2->Retired(1);
  REQUIRE(r.ok());
  CHECK_FALSE(r->ForContainer(3).key);
  CHECK(r->ForContainer(3).number == 1);
  CHECK(r->ForContainer(7).key);
  auto sealed = r->Seal("s");
  REQUIRE(sealed.ok());
  auto back = Keyring::Open(*sealed, k2, "s");
  REQUIRE(back.ok());
  CHECK_FALSE(back->generations()[0].key);
  CHECK(back->generations()[0].id == KeyIdOf(k1));
  CHECK(KeyHex(back->chunk_id_key()) == KeyHex(ChunkIdKey(k1)));
  // Nothing that opens generation 1's packs is left in it.
  std::string raw(32, 'a');
  CHECK(sealed->find(raw) == std::string::npos);
}
