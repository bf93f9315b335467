// Helpers shared by the store tests (one copy, instead of one per file):
// opening a store, reading a file back, the integrity check, counting rows
// of the database file. REQUIRE inside: call them on the test's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

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

// Store::Check, every problem reported as a failure.
void RequireClean(store::Store& s);

// The first column of the first row of `sql` on the database file at
// `db`, opened read-only beside the store (SQLite's own VFS).
int64_t Count(const std::string& db, const char* sql);

}  // namespace muscle::test
