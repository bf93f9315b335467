// Helpers shared by every test: a temporary directory, deterministic
// random bytes, a shell command's output. Store tests add
// store/store_test_util.h, server tests server/server_harness.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace muscle::test {

// A fresh temporary directory, removed (recursively) on destruction.
struct TempDir {
  TempDir();
  ~TempDir();
  std::string path;
};

// n bytes from std::mt19937_64 seeded with `seed`; the same (n, seed)
// always gives the same bytes.
std::string RandomBytes(size_t n, uint32_t seed);

// Runs `cmd` through the shell; its exit status, or -1. Stdout into *out.
int RunCommand(const std::string& cmd, std::string* out = nullptr);

// The whole content of the file at `path`; "" if it cannot be read.
std::string ReadText(const std::string& path);

}  // namespace muscle::test
