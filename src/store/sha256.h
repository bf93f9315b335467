// SHA-256 of a buffer: the x86 SHA extensions when the CPU has them
// (several times faster than mbedTLS's portable code, and hashing is a
// first-order cost of every write), mbedTLS otherwise. Pure, thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace muscle::store {

void Sha256(const void* data, size_t len, uint8_t out[32]);
// Whether the hardware path is in use (for tests and diagnostics).
bool Sha256Accelerated();
// The portable path, always (tests compare the two).
void Sha256Portable(const void* data, size_t len, uint8_t out[32]);

}  // namespace muscle::store
