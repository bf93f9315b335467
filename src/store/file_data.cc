// The data path of the store: buffered writes, reads that overlay buffered
// data on stored chunks, and re-chunking of changed ranges.
//
// Re-chunking a changed range [lo, hi) starts at the start of the stored
// extent that contains (or ends at) lo, so appends re-cut the previous tail
// chunk exactly as a single pass over the file would have. It feeds the new
// content through the chunker and stops as soon as a cut point past hi
// coincides with the start of an old extent (the boundaries have
// resynchronised) or the contiguous data ends. Only the old extents in
// between are replaced: a small write in a huge file touches one or two
// chunks.
#include <mbedtls/sha256.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <system_error>
#include <thread>

#include "common/log.h"
#include "common/threads.h"
#include "store/chunker.h"
#include "store/precut.h"
#include "store/sha256.h"
#include "store/statements.h"
#include "store/store.h"

namespace muscle::store {

namespace {

constexpr uint64_t kMaxFileSize = uint64_t(1) << 50;
// Re-chunking reads at most this much per block, and cuts a block on a
// helper thread from this size on.
constexpr size_t kFlushBlock = 1u << 20;
constexpr size_t kParallelCutMin = 512u << 10;
// FlushAhead flushes a stream's buffer once this much of it is cut.
constexpr size_t kFlushAheadMin = 2u << 20;

// A run of file data being re-chunked: its chunk boundaries and hashes.
// The bytes after the last cut (not yet decidable) carry into the next
// block unless the block reaches the end of the data.
struct CutBlock {
  struct Cut {
    size_t offset, length;
    unsigned char hash[32];
  };
  std::string data;
  uint64_t file_offset = 0;  // of data[0]
  bool at_end = false;
  std::vector<Cut> cuts;
  size_t cut_bytes = 0;
  // Cuts made ahead of the flush (precut.h) over the same bytes: a chunk
  // that starts where one of them starts is that one.
  const std::vector<Precut::Cut>* known = nullptr;
  // How the store cuts and names chunks.
  const ChunkNaming* naming = nullptr;
  // Bytes of `data` past the end of the known cuts (what Run computes).
  size_t Unknown() const {
    uint64_t end = file_offset + data.size();
    if (!known || known->empty()) return data.size();
    uint64_t known_end = known->back().offset + known->back().length;
    uint64_t from = std::max(known_end, file_offset);
    return from >= end ? 0 : size_t(end - from);
  }
  // Pure CPU work over `data`; safe on another thread. Stops early when
  // *cancel becomes true.
  void Run(const std::atomic<bool>* cancel);
};

void CutBlock::Run(const std::atomic<bool>* cancel) {
  cuts.clear();
  cut_bytes = 0;
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  auto k = known ? known->begin() : std::vector<Precut::Cut>::const_iterator();
  while (cut_bytes < data.size()) {
    if (cancel && cancel->load(std::memory_order_relaxed)) return;
    if (known) {
      uint64_t at = file_offset + cut_bytes;
      k = std::lower_bound(k, known->end(), at,
                           [](const Precut::Cut& c, uint64_t o) { return c.offset < o; });
      if (k != known->end() && k->offset == at && cut_bytes + k->length <= data.size()) {
        Cut c{cut_bytes, k->length, {}};
        memcpy(c.hash, k->hash, 32);
        cuts.push_back(c);
        cut_bytes += k->length;
        continue;
      }
    }
    size_t len = naming->CutEnd(p + cut_bytes, data.size() - cut_bytes, at_end);
    if (len == 0) return;  // undecided tail: carried into the next block
    Cut c{cut_bytes, len, {}};
    naming->Name(p + cut_bytes, len, c.hash);
    cuts.push_back(c);
    cut_bytes += len;
  }
}

}  // namespace

Status Store::Read(uint64_t ino, uint64_t offset, uint32_t count,
                   std::string& out) {
  OpScope op(this);
  out.clear();
  auto a = LoadAttr(ino);
  if (!a.ok()) return a.status();
  if (S_ISDIR(a->mode)) return Status(EISDIR);
  if (!S_ISREG(a->mode)) return Status(EINVAL);
  if (offset >= a->size) return Status::Ok();
  size_t n = size_t(std::min<uint64_t>(count, a->size - offset));
  out.resize(n);
  return ReadLogical(ino, offset, n, out.data());
}

Result<uint32_t> Store::Write(uint64_t ino, uint64_t offset,
                              std::string_view data) {
  return Take(ino, offset, data, false);
}

Status Store::WriteAcknowledged(uint64_t ino, uint64_t offset, std::string_view data,
                                uint64_t ahead_id) {
  // Logged again here unless the log has it where it runs (RedoLog::Taken).
  bool in_order = ahead_id && redo_ && redo_->Taken(ahead_id);
  return Take(ino, offset, data, true, in_order).status();
}

bool Store::Fits(uint64_t offset, size_t size) {
  return offset <= kMaxFileSize && size <= kMaxFileSize - offset;
}

Result<uint32_t> Store::Take(uint64_t ino, uint64_t offset, std::string_view data,
                             bool acknowledged, bool logged_ahead) {
  OpScope op(this);
  if (!Fits(offset, data.size())) return Status(EFBIG);
  Status s = Begin();
  if (!s.ok()) return s;
  auto a = LoadAttr(ino);
  if (!a.ok()) return a.status();
  if (S_ISDIR(a->mode)) return Status(EISDIR);
  if (!S_ISREG(a->mode)) return Status(EINVAL);
  if (data.empty()) return uint32_t(0);
  // Acknowledged data is taken whatever the space; the check still runs,
  // so that low-space mode starts (low_space()) and later writes are
  // refused before they are answered.
  if (Status room = CheckSpace(data.size()); !room.ok() && !acknowledged) return room;
  // Make room before taking the data, so that a write that fails has no
  // effect at all (a flush failing afterwards would leave it buffered).
  // Acknowledged data makes room after it is taken (below).
  if (!acknowledged) {
    auto d = dirty_.find(ino);
    if (d != dirty_.end() && d->second.bytes + data.size() > file_buffer_limit) {
      s = Atomically([&]() -> Status { return FlushFile(ino); });
      if (!s.ok()) return s;
    }
    while (!dirty_.empty() && dirty_bytes_ + data.size() > total_buffer_limit)
      MUSCLE_RETURN_IF_ERROR(FlushLargest());
    a = LoadAttr(ino);
    if (!a.ok()) return a.status();
  }
  uint64_t lo = offset, hi = offset + data.size();
  a->size = std::max(a->size, hi);
  a->mtime_ns = a->ctime_ns = NowNs();
  a->version++;
  s = StoreAttr(*a);
  if (!s.ok()) {
    AfterFailure(s);
    return s;
  }

  DirtyFile& f = dirty_[ino];
  auto& ranges = f.ranges;
  // First range that overlaps or touches [lo, hi).
  auto it = ranges.upper_bound(lo);
  if (it != ranges.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.size() >= lo) it = prev;
  }
  auto last = it;
  size_t merged = 0;
  while (last != ranges.end() && last->first <= hi) {
    last++;
    merged++;
  }
  if (merged == 1 && it->first <= lo) {
    // Common case (appends, rewrites inside one buffer): grow in place.
    std::string& buf = it->second;
    size_t at = size_t(lo - it->first);
    size_t old = buf.size();
    if (at == old) {
      // An append: no zero-fill first. Streams grow straight to the flush
      // size (in a recycled buffer when there is one) instead of doubling.
      // The helper cutting ahead (precut.h) reads the bytes before `old`:
      // it waits while they move.
      if (old + data.size() > buf.capacity()) precut_.Pause(ino);
      if (old + data.size() > buf.capacity() && old + data.size() > (1u << 20) &&
          buf.capacity() < file_buffer_limit) {
        std::string grown;
        grown.swap(spare_buffer_);
        grown.reserve(file_buffer_limit + data.size());
        grown.assign(buf);
        buf.swap(grown);
      }
      buf.append(data);
      precut_.Offered(ino, it->first, buf.data(), buf.size());
    } else {
      precut_.Drop(ino);  // bytes it cut may change
      if (at + data.size() > old) buf.resize(at + data.size());
      memcpy(buf.data() + at, data.data(), data.size());
    }
    f.bytes += buf.size() - old;
    dirty_bytes_ += buf.size() - old;
  } else {
    if (merged) precut_.Drop(ino);  // the buffers it reads are replaced
    uint64_t start = lo, end = hi;
    if (merged) {
      start = std::min(lo, it->first);
      auto back = std::prev(last);
      end = std::max<uint64_t>(hi, back->first + back->second.size());
    }
    std::string buf(size_t(end - start), '\0');
    size_t removed = 0;
    for (auto r = it; r != last; ++r) {
      memcpy(buf.data() + (r->first - start), r->second.data(), r->second.size());
      removed += r->second.size();
    }
    memcpy(buf.data() + (lo - start), data.data(), data.size());
    ranges.erase(it, last);
    f.bytes += buf.size() - removed;
    dirty_bytes_ += buf.size() - removed;
    ranges.emplace(start, std::move(buf));
  }
  // Taken: logged before it is answered (unless the loop logged it).
  if (!logged_ahead) RedoWrite(ino, offset, data, a->mtime_ns);
  if (acknowledged) {
    // A failed flush puts its buffers back: the data stays buffered.
    if (f.bytes > file_buffer_limit) {
      s = Atomically([&]() -> Status { return FlushFile(ino); });
      if (!s.ok()) return s;
    }
    while (!dirty_.empty() && dirty_bytes_ > total_buffer_limit)
      MUSCLE_RETURN_IF_ERROR(FlushLargest());
  }
  return uint32_t(data.size());
}

bool Store::FlushAhead() {
  OpScope op(this);
  uint64_t ino, lo, cut_end;
  if (!precut_.Peek(&ino, &lo, &cut_end) || cut_end < lo + kFlushAheadMin) return false;
  auto d = dirty_.find(ino);
  if (d == dirty_.end()) return false;
  auto r = d->second.ranges.find(lo);
  if (r == d->second.ranges.end() || r->second.size() < cut_end - lo) return false;
  auto a = LoadAttr(ino);
  if (!a.ok() || a->size < cut_end) return false;
  // A failure leaves the buffer as it was; the flush at the limit (or the
  // next commit) meets the error again and reports it.
  Status s = Atomically([&]() -> Status { return FlushRange(ino, lo, cut_end, a->size); });
  if (!s.ok()) return false;
  // [lo, cut_end) is stored now: the buffer keeps only what follows.
  precut_.Pause(ino);
  std::string& buf = r->second;
  size_t n = size_t(cut_end - lo);
  d->second.bytes -= n;
  dirty_bytes_ -= n;
  if (n == buf.size()) {
    precut_.Drop(ino);
    d->second.ranges.erase(r);
    if (d->second.ranges.empty()) dirty_.erase(d);
    return true;
  }
  buf.erase(0, n);
  auto node = d->second.ranges.extract(r);  // the string stays where it is
  node.key() = cut_end;
  d->second.ranges.insert(std::move(node));
  precut_.Rebase(cut_end, buf.data(), buf.size());
  return true;
}

Status Store::FlushLargest() {
  uint64_t best = 0;
  size_t most = 0;
  for (auto& [ino, f] : dirty_)
    if (f.bytes >= most) most = f.bytes, best = ino;
  if (dirty_.empty()) return Status::Ok();
  return Atomically([&]() -> Status { return FlushFile(best); });
}

Status Store::FlushFile(uint64_t ino) {
  OpScope op(this);
  auto it = dirty_.find(ino);
  if (it == dirty_.end()) return Status::Ok();
  auto a = LoadAttr(ino);
  if (!a.ok()) return a.status();
  MUSCLE_RETURN_IF_ERROR(Begin());
  // The buffers stay in place (reads overlay them) until every range is in
  // SQLite; then they are set aside until the enclosing savepoint is
  // released, so a rollback puts them back.
  for (auto& [lo, buf] : it->second.ranges) {
    uint64_t hi = std::min<uint64_t>(lo + buf.size(), a->size);
    if (lo < hi) MUSCLE_RETURN_IF_ERROR(FlushRange(ino, lo, hi, a->size));
  }
  SetAside(ino, std::move(it->second));
  dirty_.erase(it);
  return Status::Ok();
}

Status Store::FlushRange(uint64_t ino, uint64_t lo, uint64_t hi,
                         uint64_t size) {
  uint64_t start = lo;
  {
    Stmt& q = st_->extent_at_or_before;
    Stmt::Scope scope(q);
    q.Bind(1, int64_t(ino)).Bind(2, int64_t(lo));
    if (q.Step() && uint64_t(q.Int(0) + q.Int(1)) >= lo) start = uint64_t(q.Int(0));
    if (q.failed()) return q.Error("flush");
  }
  // Old extents from `start` on, loaded in batches as the stream advances.
  std::vector<ExtentRow> old;
  bool old_done = false;
  auto load_more = [&]() -> Status {
    uint64_t from = old.empty() ? start : old.back().offset + 1;
    Stmt& q = st_->extents_from;
    Stmt::Scope scope(q);
    q.Bind(1, int64_t(ino)).Bind(2, int64_t(from)).Bind(3, 256);
    size_t got = 0;
    while (q.Step()) {
      old.push_back(ExtentRow::From(q));
      got++;
    }
    if (q.failed()) return q.Error("flush extents");
    if (got < 256) old_done = true;
    return Status::Ok();
  };
  // Finds the old extent covering `at`: whether it starts exactly there and
  // where it ends.
  auto old_starts_at = [&](uint64_t at, bool& found, uint64_t* end) -> Status {
    while (!old_done && (old.empty() || old.back().offset + old.back().length <= at))
      MUSCLE_RETURN_IF_ERROR(load_more());
    auto it = std::partition_point(old.begin(), old.end(), [&](const ExtentRow& e) {
      return e.offset + e.length <= at;
    });
    found = false;
    if (it != old.end() && it->offset <= at) {
      found = it->offset == at;
      if (end) *end = it->offset + it->length;
    }
    return Status::Ok();
  };

  // Data is contiguous up to hi; beyond it, as far as old extents continue
  // without a hole.
  uint64_t data_end = hi;
  auto extend_data_end = [&]() -> Status {
    for (;;) {
      bool found;
      uint64_t end = 0;
      MUSCLE_RETURN_IF_ERROR(old_starts_at(data_end, found, &end));
      if (end > data_end) {
        data_end = std::min(end, size);
        if (data_end == size) return Status::Ok();
        continue;
      }
      return Status::Ok();
    }
  };
  MUSCLE_RETURN_IF_ERROR(extend_data_end());

  // Two stages: this thread reads the data into blocks and inserts chunks
  // into SQLite; cutting and hashing a block (CPU only) runs on a helper
  // thread while this one inserts the previous block's chunks. Blocks are
  // large up to `hi` and small after it, where the boundaries usually
  // resynchronise within a chunk or two. Cut points are exactly those of a
  // single pass (a block ends with its undecided tail carried over).
  std::vector<ExtentRow> created;
  uint64_t pos = start;  // next byte to read into a block
  uint64_t chunk_start = start;
  bool stopped = false;
  auto block_target = [&]() -> size_t {
    uint64_t want = hi > pos ? hi - pos + 2 * kMaxChunk : 2 * kMaxChunk;
    return size_t(std::min<uint64_t>(want, kFlushBlock));
  };
  // Fills `b` with the carried tail plus new data.
  const std::vector<Precut::Cut>& known = precut_.CutsOf(ino);
  auto fill = [&](CutBlock& b, std::string_view carry) -> Status {
    b.data.assign(carry.data(), carry.size());
    b.file_offset = pos - carry.size();
    b.known = known.empty() ? nullptr : &known;
    b.naming = naming_.get();
    size_t target = block_target();
    while (b.data.size() < target && pos < data_end) {
      size_t n = size_t(std::min<uint64_t>(target - b.data.size(), data_end - pos));
      size_t at = b.data.size();
      b.data.resize(at + n);
      MUSCLE_RETURN_IF_ERROR(ReadLogical(ino, pos, n, b.data.data() + at));
      pos += n;
      if (pos == data_end) MUSCLE_RETURN_IF_ERROR(extend_data_end());
    }
    b.at_end = pos == data_end;
    return Status::Ok();
  };
  // Inserts the chunks of a cut block until the boundaries resynchronise.
  auto insert = [&](const CutBlock& b) -> Status {
    for (const CutBlock::Cut& c : b.cuts) {
      auto id = PutChunk(std::string_view(b.data.data() + c.offset, c.length), c.hash);
      if (!id.ok()) return id.status();
      created.push_back({chunk_start, c.length, *id});
      chunk_start += c.length;
      if (chunk_start >= hi) {
        bool found = false;
        MUSCLE_RETURN_IF_ERROR(old_starts_at(chunk_start, found, nullptr));
        if (found || chunk_start >= data_end) {
          stopped = true;
          return Status::Ok();
        }
      }
    }
    return Status::Ok();
  };

  CutBlock blocks[2];
  // Reuse the block buffers' memory across flushes (no fresh pages to fault
  // in for every flush).
  struct Reuse {
    CutBlock* b;
    std::string* keep;
    Reuse(CutBlock* blocks, std::string* scratch) : b(blocks), keep(scratch) {
      b[0].data.swap(keep[0]);
      b[1].data.swap(keep[1]);
    }
    ~Reuse() {
      b[0].data.swap(keep[0]);
      b[1].data.swap(keep[1]);
    }
  } reuse(blocks, flush_scratch_);
  int cur = 0;
  MUSCLE_RETURN_IF_ERROR(fill(blocks[cur], {}));
  const CutBlock* pending = nullptr;  // cut, not yet inserted
  for (;;) {
    CutBlock& b = blocks[cur];
    // Cut this block (on the helper, "flush-cut" in common/threads.h, when
    // it is big enough to be worth a thread) while inserting the previous one.
    std::atomic<bool> cancel{false};
    std::thread cutting;
    struct Joined {  // as a std::async future: joined however this scope ends
      std::thread& t;
      ~Joined() {
        if (t.joinable()) t.join();
      }
    } joined{cutting};
    if (b.Unknown() >= kParallelCutMin) {
      try {
        cutting = StartThread("flush-cut", [&b, &cancel] { b.Run(&cancel); });
      } catch (const std::system_error&) {
        b.Run(nullptr);  // no thread to be had: cut here
      }
    } else {
      b.Run(nullptr);
    }
    Status s = pending ? insert(*pending) : Status::Ok();
    if (cutting.joinable()) {
      if (!s.ok() || stopped) cancel = true;
      cutting.join();
    }
    MUSCLE_RETURN_IF_ERROR(s);
    if (stopped) break;
    // A block that reaches the end of the data is cut to its last byte.
    // Any other one leaves data to read, so the next block is never empty.
    if (b.at_end) {
      MUSCLE_RETURN_IF_ERROR(insert(b));
      break;
    }
    pending = &b;
    cur ^= 1;
    MUSCLE_RETURN_IF_ERROR(fill(blocks[cur], std::string_view(b.data).substr(b.cut_bytes)));
  }
  uint64_t stop = chunk_start;
  // Replace the old extents in [start, stop) by the new ones.
  while (!old_done && (old.empty() || old.back().offset < stop))
    MUSCLE_RETURN_IF_ERROR(load_more());
  for (const ExtentRow& e : old) {
    if (e.offset >= stop) break;
    Stmt& d = st_->delete_extent;
    d.Bind(1, int64_t(ino)).Bind(2, int64_t(e.offset));
    MUSCLE_RETURN_IF_ERROR(d.Run());
    MUSCLE_RETURN_IF_ERROR(DropChunk(e.chunk));
  }
  for (const ExtentRow& e : created) {
    Stmt& q = st_->insert_extent;
    q.Bind(1, int64_t(ino)).Bind(2, int64_t(e.offset)).Bind(3, int64_t(e.length))
        .Bind(4, e.chunk);
    MUSCLE_RETURN_IF_ERROR(q.Run());
  }
  return Status::Ok();
}

Result<int64_t> Store::PutChunk(std::string_view data) {
  unsigned char hash[32];
  naming_->Name(data.data(), data.size(), hash);
  return PutChunk(data, hash);
}

Result<int64_t> Store::PutChunk(std::string_view data, const unsigned char (&hash)[32]) {
  if (fault_point) MUSCLE_RETURN_IF_ERROR(fault_point("put-chunk"));
  std::string_view h(reinterpret_cast<const char*>(hash), 32);
  {
    Stmt& q = st_->find_chunk;
    Stmt::Scope scope(q);
    q.Bind(1, h, true);
    if (q.Step()) {
      int64_t id = q.Int(0);
      Stmt& r = st_->ref_chunk;
      r.Bind(1, 1).Bind(2, id);
      MUSCLE_RETURN_IF_ERROR(r.Run());
      return id;
    }
    if (q.failed()) return q.Error("find chunk");
  }
  auto at = AppendChunk(data, hash);
  if (!at.ok()) return at.status();
  Stmt& ins = st_->insert_chunk;
  ins.Bind(1, h, true).Bind(2, int64_t(data.size())).Bind(3, int64_t(at->container))
      .Bind(4, int64_t(at->offset));
  MUSCLE_RETURN_IF_ERROR(ins.Run());
  return int64_t(sqlite3_last_insert_rowid(db_.raw()));
}

// A chunk whose last reference goes is deleted (its space is punched after
// the commit); a dead tree object drops the references it held on its
// children in turn (iteratively: a deep tree cannot exhaust the stack).
Status Store::DropChunk(int64_t chunk) {
  std::vector<int64_t> work{chunk};
  while (!work.empty()) {
    int64_t id = work.back();
    work.pop_back();
    Stmt& r = st_->ref_chunk;
    r.Bind(1, -1).Bind(2, id);
    MUSCLE_RETURN_IF_ERROR(r.Run());
    Stmt& q = st_->chunk_refs;
    int64_t refs = 0, kind = 0;
    {
      Stmt::Scope scope(q);
      q.Bind(1, id);
      if (q.Step()) refs = q.Int(0), kind = q.Int(1);
      if (q.failed()) return q.Error("chunk refs");
    }
    if (refs > 0) continue;
    ChunkLocation at;
    uint64_t size;
    unsigned char name[32] = {};
    {
      Stmt& loc = st_->chunk_location;
      Stmt::Scope scope(loc);
      loc.Bind(1, id);
      if (!loc.Step()) return loc.failed() ? loc.Error("chunk location") : Status(EIO, "chunk vanished");
      at = {uint64_t(loc.Int(0)), uint64_t(loc.Int(1))}, size = uint64_t(loc.Int(2));
      if (loc.Blob(3).size() == 32) memcpy(name, loc.Blob(3).data(), 32);
    }
    if (kind == 1) {
      // A dead object that cannot be read or decoded (damaged on disk)
      // keeps its children's references: space is leaked (check reports
      // it), but freeing space never fails the commit that deletes.
      std::string bytes(size, '\0');
      Status rs = chunks_->Read(at, size, 0, size, bytes.data(), name);
      auto o = rs.ok() ? DecodeObject(bytes) : Result<TreeObject>(rs);
      if (!o.ok()) {
        Log("store: tree object %lld cannot be freed (%s); the chunks it names stay",
            (long long)id, o.status().ToString().c_str());
      } else {
        for (const ObjectHash& h : ChildrenOf(*o)) {
          auto child = ChunkIdOf(h);
          if (child.ok()) work.push_back(*child);
          else Log("store: %s", child.status().ToString().c_str());
        }
      }
    }
    punches_.push_back({at, size});
    garbage_since_gc_ = true;
    Stmt& d = st_->delete_chunk;
    d.Bind(1, id);
    MUSCLE_RETURN_IF_ERROR(d.Run());
  }
  return Status::Ok();
}

Status Store::DeleteExtentsFrom(uint64_t ino, uint64_t from) {
  for (;;) {
    std::vector<ExtentRow> batch;
    {
      Stmt& q = st_->extents_from;
      Stmt::Scope scope(q);
      q.Bind(1, int64_t(ino)).Bind(2, int64_t(from)).Bind(3, 512);
      while (q.Step())
        batch.push_back(ExtentRow::From(q));
      if (q.failed()) return q.Error("extents");
    }
    if (batch.empty()) return Status::Ok();
    for (const ExtentRow& e : batch) {
      Stmt& d = st_->delete_extent;
      d.Bind(1, int64_t(ino)).Bind(2, int64_t(e.offset));
      MUSCLE_RETURN_IF_ERROR(d.Run());
      MUSCLE_RETURN_IF_ERROR(DropChunk(e.chunk));
    }
  }
}

Status Store::TruncateData(uint64_t ino, uint64_t old_size, uint64_t new_size) {
  MUSCLE_RETURN_IF_ERROR(FlushFile(ino));
  if (new_size >= old_size) return Status::Ok();  // the new range is a hole
  Stmt& q = st_->extent_at_or_before;
  ExtentRow e{0, 0, 0};
  bool straddles = false;
  if (new_size > 0) {
    Stmt::Scope scope(q);
    q.Bind(1, int64_t(ino)).Bind(2, int64_t(new_size - 1));
    if (q.Step()) {
      e = ExtentRow::From(q);
      straddles = e.offset < new_size && e.offset + e.length > new_size;
    }
    if (q.failed()) return q.Error("truncate");
  }
  if (!straddles) return DeleteExtentsFrom(ino, new_size);
  std::string prefix(size_t(new_size - e.offset), '\0');
  MUSCLE_RETURN_IF_ERROR(ReadChunk(e.chunk, 0, prefix.size(), prefix.data()));
  MUSCLE_RETURN_IF_ERROR(DeleteExtentsFrom(ino, e.offset));
  auto id = PutChunk(prefix);
  if (!id.ok()) return id.status();
  Stmt& ins = st_->insert_extent;
  ins.Bind(1, int64_t(ino)).Bind(2, int64_t(e.offset))
      .Bind(3, int64_t(prefix.size())).Bind(4, *id);
  return ins.Run();
}

Status Store::ReadLogical(uint64_t ino, uint64_t offset, size_t len, char* out) {
  auto it = dirty_.find(ino);
  if (it == dirty_.end()) return ReadStored(ino, offset, len, out);
  uint64_t end = offset + len;
  auto& ranges = it->second.ranges;
  // The buffered range at or before offset, then those after it.
  auto r = ranges.upper_bound(offset);
  if (r != ranges.begin()) r = std::prev(r);
  if (r != ranges.end() && r->first <= offset && r->first + r->second.size() >= end) {
    // All of it in one buffered range (re-chunking fresh writes): no need
    // to look at the stored extents.
    memcpy(out, r->second.data() + (offset - r->first), len);
    return Status::Ok();
  }
  MUSCLE_RETURN_IF_ERROR(ReadStored(ino, offset, len, out));
  for (; r != ranges.end() && r->first < end; ++r) {
    uint64_t rs = r->first, re = rs + r->second.size();
    uint64_t s = std::max(rs, offset), e = std::min(re, end);
    if (s < e) memcpy(out + (s - offset), r->second.data() + (s - rs), e - s);
  }
  return Status::Ok();
}

// The extents' ranges are looked up in the index a batch at a time and
// read with one ReadBatch each, so that a chunk store with slow reads can
// merge and prefetch them.
Status Store::ReadStored(uint64_t ino, uint64_t offset, size_t len, char* out) {
  uint64_t end = offset + len;
  std::vector<ChunkRead> reads;
  // Holes (no extent) read as zeros: the bytes before `filled` are either
  // zeroed or named by an extent (they come in order of offset).
  uint64_t filled = offset;
  auto zero_to = [&](uint64_t to) {
    if (to > filled) memset(out + (filled - offset), 0, size_t(to - filled));
    filled = std::max(filled, to);
  };
  auto copy = [&](const ExtentRow& e) -> Status {
    uint64_t s = std::max(e.offset, offset), t = std::min(e.offset + e.length, end);
    if (s >= t) return Status::Ok();
    zero_to(s);
    filled = std::max(filled, t);
    auto r = ChunkRange(e.chunk, s - e.offset, size_t(t - s), out + (s - offset));
    if (!r.ok()) return r.status();
    reads.push_back(*r);
    return Status::Ok();
  };
  {
    Stmt& q = st_->extent_at_or_before;
    ExtentRow e{0, 0, 0};
    bool have = false;
    {
      Stmt::Scope scope(q);
      q.Bind(1, int64_t(ino)).Bind(2, int64_t(offset));
      if (q.Step()) {
        e = ExtentRow::From(q);
        have = true;
      }
      if (q.failed()) return q.Error("read");
    }
    if (have) MUSCLE_RETURN_IF_ERROR(copy(e));
  }
  uint64_t from = offset + 1;
  while (from < end) {
    std::vector<ExtentRow> batch;
    {
      Stmt& q = st_->extents_from;
      Stmt::Scope scope(q);
      q.Bind(1, int64_t(ino)).Bind(2, int64_t(from)).Bind(3, 64);
      while (q.Step()) {
        ExtentRow e = ExtentRow::From(q);
        if (e.offset >= end) break;
        batch.push_back(e);
      }
      if (q.failed()) return q.Error("read");
    }
    for (const ExtentRow& e : batch) MUSCLE_RETURN_IF_ERROR(copy(e));
    MUSCLE_RETURN_IF_ERROR(chunks_->ReadBatch(reads));
    reads.clear();
    if (batch.size() < 64) break;
    from = batch.back().offset + 1;
  }
  zero_to(end);
  return chunks_->ReadBatch(reads);
}

Result<Store::GcReport> Store::CollectGarbage(bool all) {
  OpScope op(this);
  GcReport report;
  MUSCLE_RETURN_IF_ERROR(Sync(true));
  struct PackUse {
    uint64_t id, size, live, data;  // data: the bytes of its live chunks
  };
  std::vector<PackUse> packs;
  {
    Stmt q(db_,
           "SELECT p.id, p.size, coalesce(sum(c.size), 0) + count(c.id) * ? + ?, coalesce(sum(c.size), 0) "
           "FROM packs p LEFT JOIN chunks c ON c.pack=p.id GROUP BY p.id ORDER BY p.id");
    q.Bind(1, int64_t(chunks_->RecordOverhead())).Bind(2, int64_t(kContainerHeaderSize));
    while (q.Step())
      packs.push_back({uint64_t(q.Int(0)), uint64_t(q.Int(1)), uint64_t(q.Int(2)), uint64_t(q.Int(3))});
    if (q.failed()) return q.Error("gc");
  }
  // Which packs to compact is decided here, once: the pack open now fills
  // with the copies (and may be sealed meanwhile), and compacting it too
  // would copy them all a second time (its dead records are punched
  // below). The total shown is then exactly what is copied.
  // The open pack is compacted only when it is sealed under an older key
  // and holds live chunks (the copies start a new pack: Store::Open sealed
  // it after the rotation); every pack under an older key is.
  const uint64_t open_pack = chunks_->mark().container;
  auto sparse = [&](const PackUse& p) {
    bool old_key = p.id < rewrite_below_;
    if (p.id == open_pack && !(old_key && p.live > kContainerHeaderSize)) return false;
    return p.live * 2 < p.size || (all && p.live < p.size) || old_key;
  };
  // Only the whole gc (musclefs gc) reports; Tick's runs are one pack.
  ProgressSink* shown = all ? progress : nullptr;
  if (shown) {
    uint64_t to_copy = 0;
    for (const PackUse& p : packs)
      if (sparse(p)) to_copy += p.data;
    shown->Begin("gc: copying live chunks", ProgressUnit::kBytes, to_copy);
  }
  for (const PackUse& p : packs) {
    if (!sparse(p)) continue;
    // Copy the live chunks into the open pack; the index moves in one
    // transaction, synced before the old pack goes.
    Status s = Atomically([&]() -> Status {
      std::vector<std::pair<int64_t, std::pair<uint64_t, uint64_t>>> live;  // id, offset, size
      std::vector<std::string> hashes;
      {
        Stmt q(db_, "SELECT id, offset, size, hash FROM chunks WHERE pack=? ORDER BY offset");
        q.Bind(1, int64_t(p.id));
        while (q.Step()) {
          live.push_back({q.Int(0), {uint64_t(q.Int(1)), uint64_t(q.Int(2))}});
          hashes.emplace_back(q.Blob(3));
        }
        if (q.failed()) return q.Error("gc chunks");
      }
      std::string data;
      Stmt move(db_, "UPDATE chunks SET pack=?, offset=? WHERE id=?");
      for (size_t i = 0; i < live.size(); i++) {
        auto [id, where] = live[i];
        data.resize(where.second);
        MUSCLE_RETURN_IF_ERROR(
            chunks_->Read({p.id, where.first}, data.size(), 0, data.size(), data.data(),
                          reinterpret_cast<const uint8_t*>(hashes[i].data())));
        unsigned char h[32];
        memcpy(h, hashes[i].data(), 32);
        auto at = AppendChunk(data, h);
        if (!at.ok()) return at.status();
        move.Bind(1, int64_t(at->container)).Bind(2, int64_t(at->offset)).Bind(3, id);
        MUSCLE_RETURN_IF_ERROR(move.Run());
        report.bytes_copied += data.size();
        if (shown) shown->Add(data.size());
      }
      Stmt del(db_, "DELETE FROM packs WHERE id=?");
      del.Bind(1, int64_t(p.id));
      return del.Run();
    });
    MUSCLE_RETURN_IF_ERROR(s);
    MUSCLE_RETURN_IF_ERROR(Sync(true));
    MUSCLE_RETURN_IF_ERROR(chunks_->Remove(p.id));
    gate_->PackRemoved();
    report.packs_removed++;
    report.bytes_freed += p.size;
    if (!all) break;
  }
  if (shown) shown->End();
  if (all) {
    // Dead records whose space a crash (or a file system without hole
    // punching) kept: punch them now.
    Stmt q(db_, "SELECT id, size FROM packs");
    std::vector<std::pair<uint64_t, uint64_t>> left;
    while (q.Step()) left.push_back({uint64_t(q.Int(0)), uint64_t(q.Int(1))});
    Stmt used(db_, "SELECT 1 FROM chunks WHERE pack=? AND offset=?");
    if (shown) shown->Begin("gc: punching dead records", ProgressUnit::kItems, left.size());
    for (auto [id, size] : left) {
      std::vector<ChunkRecord> records;
      MUSCLE_RETURN_IF_ERROR(chunks_->Records(id, size, records));
      for (const auto& r : records) {
        Stmt::Scope scope(used);
        used.Bind(1, int64_t(id)).Bind(2, int64_t(r.offset));
        if (used.Step()) continue;
        if (used.failed()) return used.Error("gc");
        MUSCLE_RETURN_IF_ERROR(chunks_->Punch({id, r.offset}, r.length));
      }
      if (shown) shown->Add(1);
    }
    MUSCLE_RETURN_IF_ERROR(chunks_->WaitIdle());
    if (shown) shown->End();
  }
  last_gc_ = std::chrono::steady_clock::now();
  return report;
}

Result<ChunkRead> Store::ChunkRange(int64_t chunk, uint64_t offset, size_t len, char* out) {
  Stmt& q = st_->chunk_location;
  Stmt::Scope scope(q);
  q.Bind(1, chunk);
  if (!q.Step()) return q.failed() ? q.Error("chunk location") : Status(EIO, "chunk " + std::to_string(chunk) + " missing");
  if (offset + len > uint64_t(q.Int(2)))
    return Status(EIO, "chunk " + std::to_string(chunk) + " shorter than its extent");
  ChunkRead r{{uint64_t(q.Int(0)), uint64_t(q.Int(1))}, uint64_t(q.Int(2)), offset, len, out};
  std::string_view name = q.Blob(3);
  if (name.size() == 32) {
    r.named = true;
    memcpy(r.name, name.data(), 32);
  }
  return r;
}

Status Store::ReadChunk(int64_t chunk, uint64_t offset, size_t len, char* out) {
  auto r = ChunkRange(chunk, offset, len, out);
  if (!r.ok()) return r.status();
  return chunks_->ReadBatch(std::span<const ChunkRead>(&*r, 1));
}

}  // namespace muscle::store
