// Helpers shared by the store tests (one copy, instead of one per file):
// opening a store, reading a file back, the integrity check, counting rows
// of the database file. REQUIRE inside: call them on the test's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "crypto/keys.h"
#include "store/store.h"
#include "tests/test_util.h"

namespace muscle::test {

// Store::Open, required to succeed (its error is shown if not).
std::unique_ptr<store::Store> OpenStore(const std::string& path);

// The whole content of `ino` (its size from GetAttr), every read required
// to succeed and to return bytes.
std::string ReadAll(store::Tree& s, uint64_t ino);

// The pack file `id` of the store whose database is in `dir`
// (dir/packs/<16 hex digits>.pack, store/pack.h).
std::string PackPath(const std::string& dir, uint64_t id);

// A file `name` in `dir` holding `data` (written in 1 MiB pieces), owned
// by `uid`:`uid`; its inode number.
uint64_t WriteFile(store::Store& s, const std::string& name, const std::string& data,
                   uint64_t dir = store::kRootIno, uint32_t mode = 0644, uint32_t uid = 0);

// A master key of 32 bytes `fill`, for encrypted stores in tests.
std::shared_ptr<const crypto::MasterKey> KeyOf(char fill);

// Store::Check, every problem reported as a failure.
void RequireClean(store::Store& s);

// The first column of the first row of `sql` on the database file at
// `db`, opened read-only beside the store (SQLite's own VFS).
int64_t Count(const std::string& db, const char* sql);

}  // namespace muscle::test
