// Content-defined chunking (FastCDC-style, with normalized chunking).
//
// A rolling "gear" hash runs over the bytes; a chunk ends where the hash
// matches a mask, subject to minimum and maximum sizes. Because cut points
// depend only on nearby content, an insertion near the start of a file
// changes the chunks around it and leaves later chunks identical, which is
// what makes deduplication and small rewrites cheap.
//
// The gear table and masks are part of the on-disk format: changing them
// changes where files are cut and defeats deduplication against existing
// chunks. An encrypted store cuts with a table derived from its key
// (store/chunk_naming.h). Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace muscle::store {

constexpr size_t kMinChunk = 16 * 1024;
constexpr size_t kAvgChunk = 64 * 1024;
constexpr size_t kMaxChunk = 256 * 1024;

// Returns the length of the first chunk of data[0..len), or 0 when no cut
// is decidable yet (fewer than kMaxChunk bytes and no content cut found,
// and !at_end). With at_end, the remaining bytes form the last chunk when
// no cut is found.
size_t FindChunkEnd(const uint8_t* data, size_t len, bool at_end);
// The same with another gear table of 256 entries (an encrypted store's,
// derived from its key: store/chunk_naming.h). The masks and sizes are
// the same; only the table differs.
size_t FindChunkEnd(const uint8_t* data, size_t len, bool at_end, const uint64_t* gear);

}  // namespace muscle::store
