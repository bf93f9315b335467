// Twrites answered before the writer takes their data
// (server/write_ahead.h): reads after the reply see the data, the bytes
// waiting so never pass the bound, and a failed flush of such data keeps
// the data and is reported to the file's next write.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "store/vfs.h"
#include "tests/server/store_fs_rig.h"

using namespace muscle;
using namespace muscle::test;

namespace {

uint64_t MakeFile(Rig& rig, const std::string& name) {
  auto made = rig.Call(p9::Tlcreate{1, name, 2, 0644, 0}, kRootIno);
  REQUIRE(made);
  auto* c = std::get_if<p9::Rlcreate>(&made->msg);
  REQUIRE(c);
  return c->qid.path;
}

std::string ReadBack(Rig& rig, uint64_t ino, uint32_t count) {
  auto rd = rig.Call(p9::Tread{2, 0, count}, ino);
  REQUIRE(rd);
  auto* data = std::get_if<p9::Rread>(&rd->msg);
  REQUIRE(data);
  return data->data.bytes;
}

}  // namespace

TEST_CASE("write ahead: a Twrite is answered before the writer has it, and a read after the reply sees it") {
  Rig rig;
  uint64_t f = MakeFile(rig, "f");
  // The first write goes through the writer; the file is then known.
  REQUIRE(rig.Call(p9::Twrite{2, 0, p9::Data{"old"}}, f));
  REQUIRE(rig.Call(p9::Tfsync{2, 0}, f));  // committed: the file is clean
  rig.HoldWriter();
  // Answered at once, with the writer stuck (the loop has not even run).
  std::optional<p9::FsReply> wrote;
  rig.Send(p9::Twrite{2, 0, p9::Data{"new"}}, f, [&](p9::FsReply r) { wrote = std::move(r); });
  REQUIRE(wrote);
  REQUIRE(std::get_if<p9::Rwrite>(&wrote->msg));
  // A read sent after the reply (from any fid or connection: the file
  // system sees the inode) must not be answered by a reader from the
  // committed "old": it waits for the writer, behind the write.
  std::optional<p9::FsReply> got;
  rig.Send(p9::Tread{3, 0, 100}, f, [&](p9::FsReply r) { got = std::move(r); });
  rig.RunUntil([&] { return got.has_value(); }, 300ms);
  CHECK_FALSE(got);
  rig.ReleaseWriter();
  rig.RunUntil([&] { return got.has_value(); }, 5s);
  REQUIRE(got);
  auto* data = std::get_if<p9::Rread>(&got->msg);
  REQUIRE(data);
  CHECK(data->data.bytes == "new");
  // After a commit the readers may serve it again: the same bytes.
  REQUIRE(rig.Call(p9::Tfsync{2, 0}, f));
  rig.HoldWriter();
  CHECK(ReadBack(rig, f, 100) == "new");
  rig.ReleaseWriter();
}

TEST_CASE("write ahead: the bytes answered ahead never pass the bound; past it a write waits for the writer") {
  constexpr size_t kBound = 256 << 10, kPiece = 64 << 10, kPieces = 32;
  Rig rig(nullptr, kBound);
  uint64_t f = MakeFile(rig, "f");
  std::string data = RandomBytes(kPiece * kPieces, 7);
  REQUIRE(rig.Call(p9::Twrite{2, 0, p9::Data{data.substr(0, kPiece)}}, f));
  rig.HoldWriter();
  // The client pipelines the rest: the bound's worth is answered now, the
  // others when the writer has taken them.
  std::vector<p9::FsReply> replies;
  for (size_t i = 1; i < kPieces; i++)
    rig.Send(p9::Twrite{2, i * kPiece, p9::Data{data.substr(i * kPiece, kPiece)}}, f,
             [&](p9::FsReply r) { replies.push_back(std::move(r)); });
  CHECK(replies.size() == kBound / kPiece);
  CHECK(rig.fs->write_ahead()->peak() <= kBound);
  rig.ReleaseWriter();
  rig.RunUntil([&] { return replies.size() == kPieces - 1; }, 10s);
  REQUIRE(replies.size() == kPieces - 1);
  for (auto& r : replies) CHECK(std::get_if<p9::Rwrite>(&r.msg));
  // More writes once the writer caught up: still never past the bound.
  for (size_t round = 0; round < 4; round++) {
    size_t answered = 0;
    for (size_t i = 0; i < kPieces; i++)
      rig.Send(p9::Twrite{2, i * kPiece, p9::Data{data.substr(i * kPiece, kPiece)}}, f,
               [&](p9::FsReply r) { answered += std::get_if<p9::Rwrite>(&r.msg) != nullptr; });
    rig.RunUntil([&] { return answered == kPieces; }, 10s);
    REQUIRE(answered == kPieces);
  }
  CHECK(rig.fs->write_ahead()->peak() <= kBound);
  CHECK(ReadBack(rig, f, uint32_t(data.size())) == data);
}

TEST_CASE("write ahead: a failed flush of acknowledged data keeps it and is reported to the next write") {
  constexpr size_t kPiece = 64 << 10, kPieces = 8;
  Rig rig(
      [](Store& s) {
        s.file_buffer_limit = 4 * kPiece;            // the 5th piece makes room
        s.commit_interval = std::chrono::hours(1);  // no commit flushes first
      },
      kPiece * kPieces);  // every piece answered ahead
  uint64_t f = MakeFile(rig, "f");
  std::string data = RandomBytes(kPiece * kPieces, 9);
  REQUIRE(rig.Call(p9::Twrite{2, 0, p9::Data{data.substr(0, kPiece)}}, f));
  // The pack exists, so the fault below hits a record's write.
  REQUIRE(rig.Call(p9::Tfsync{2, 0}, f));
  rig.HoldWriter();
  size_t answered = 0;
  for (size_t i = 1; i < kPieces; i++)
    rig.Send(p9::Twrite{2, i * kPiece, p9::Data{data.substr(i * kPiece, kPiece)}}, f,
             [&](p9::FsReply r) { answered += std::get_if<p9::Rwrite>(&r.msg) != nullptr; });
  REQUIRE(answered == kPieces - 1);  // all acknowledged ahead
  // The flush making room fails at its first pack write.
  store::vfs::InjectFault(store::vfs::kWrite, 1, SQLITE_IOERR_WRITE, false);
  rig.ReleaseWriter();
  // A getattr (not a write, fsync or clunk: it does not take the error)
  // runs on the writer after the writes.
  auto ga = rig.Call(p9::Tgetattr{2, 0x7ff}, f);
  REQUIRE(ga);
  REQUIRE(std::get_if<p9::Rgetattr>(&ga->msg));
  CHECK(std::get<p9::Rgetattr>(ga->msg).size == data.size());
  CHECK(store::vfs::FaultFired());
  store::vfs::ClearFault();
  // The next write gets the error, and its data is not taken.
  auto wr = rig.Call(p9::Twrite{2, data.size(), p9::Data{"refused"}}, f);
  REQUIRE(wr);
  auto* err = std::get_if<p9::Rlerror>(&wr->msg);
  REQUIRE(err);
  CHECK(err->ecode == EIO);
  // Every acknowledged byte is still there.
  CHECK(ReadBack(rig, f, uint32_t(data.size() + 100)) == data);
  // Reported once: the write after it is taken, and all of it commits.
  wr = rig.Call(p9::Twrite{2, data.size(), p9::Data{"tail"}}, f);
  REQUIRE(wr);
  CHECK(std::get_if<p9::Rwrite>(&wr->msg));
  auto fs = rig.Call(p9::Tfsync{2, 0}, f);
  REQUIRE(fs);
  CHECK(std::get_if<p9::Rfsync>(&fs->msg));
  // Committed (every buffer flushed into packs): read back from there.
  CHECK_FALSE(rig.worker->gate()->IsDirty(f));
  CHECK(ReadBack(rig, f, uint32_t(data.size() + 100)) == data + "tail");
}
