// Session rules with a scripted file system: version/msize, tags, fids,
// flush ordering and open-state checks, without sockets or SQLite.
#include <fcntl.h>

#include <catch2/catch.hpp>
#include <deque>

#include "9p/codec.h"
#include "9p/session.h"

using namespace muscle::p9;

namespace {

// Holds requests until the test completes them, in any order.
struct FakeFs : FileSystem {
  struct Pending {
    FsRequest req;
    Done done;
  };
  std::deque<Pending> pending;
  std::vector<uint64_t> released;
  void Submit(FsRequest req, Done done) override {
    pending.push_back({std::move(req), std::move(done)});
  }
  void Release(uint64_t ino) override { released.push_back(ino); }
  // Completes request i with reply m.
  void Complete(size_t i, Message m) {
    auto p = std::move(pending[i]);
    pending.erase(pending.begin() + long(i));
    p.done(FsReply{std::move(m), {}});
  }
};

struct Harness {
  FakeFs fs;
  LockTable locks;
  std::vector<std::pair<uint16_t, Message>> replies;
  bool closed = false;
  std::shared_ptr<Session> s;
  Harness() {
    s = std::make_shared<Session>(
        fs, locks, SessionOptions{65536, ENOENT, "test"},
        [this](std::string f) {
          Decoded d = Decode(reinterpret_cast<const uint8_t*>(f.data()), f.size());
          REQUIRE(d.status == DecodeStatus::kOk);
          replies.emplace_back(d.tag, std::move(d.msg));
        },
        [this](const char*) { closed = true; });
  }
  ~Harness() {
    // Requests never completed hold the session; drop them before the fake
    // file system goes away.
    s->Shutdown();
    fs.pending.clear();
  }
  void Send(uint16_t tag, const Message& m) {
    std::string f;
    Encode(tag, m, f);
    s->OnFrame(reinterpret_cast<const uint8_t*>(f.data()), f.size());
  }
  Message Last() { return replies.back().second; }
  int LastErr() {
    auto* e = std::get_if<Rlerror>(&replies.back().second);
    return e ? int(e->ecode) : 0;
  }
  // version + attach fid 0 to inode 1.
  void Ready() {
    Send(kNoTag, Tversion{1 << 20, "9P2000.L"});
    Send(1, Tattach{0, kNoFid, "", "", 0});
    fs.Complete(0, Rattach{Qid{kQtDir, 0, 1}});
    replies.clear();
  }
};

}  // namespace

TEST_CASE("version negotiates msize and resets the session") {
  Harness h;
  h.Send(kNoTag, Tversion{1 << 20, "9P2000.L"});
  auto r = std::get<Rversion>(h.Last());
  CHECK(r.msize == 65536);
  CHECK(r.version == "9P2000.L");
  CHECK(h.s->max_frame() == 65536);
  h.Send(1, Tattach{0, kNoFid, "", "", 0});
  h.fs.Complete(0, Rattach{Qid{kQtDir, 0, 1}});
  CHECK(h.s->fid_count() == 1);
  h.Send(kNoTag, Tversion{8192, "9P2000.L.extra"});
  CHECK(std::get<Rversion>(h.Last()).version == "9P2000.L");
  CHECK(h.s->fid_count() == 0);
  CHECK(h.fs.released == std::vector<uint64_t>{1});
  h.Send(kNoTag, Tversion{8192, "9P2000.u"});
  CHECK(std::get<Rversion>(h.Last()).version == "unknown");
  h.Send(2, Tclunk{0});
  CHECK(h.LastErr() == EPROTO);
}

TEST_CASE("replies go out in completion order, not arrival order") {
  Harness h;
  h.Ready();
  h.Send(10, Tgetattr{0, kGetattrAll});
  h.Send(11, Tstatfs{0});
  REQUIRE(h.fs.pending.size() == 2);
  h.fs.Complete(1, Rstatfs{});
  h.fs.Complete(0, Rgetattr{});
  REQUIRE(h.replies.size() == 2);
  CHECK(h.replies[0].first == 11);
  CHECK(h.replies[1].first == 10);
  CHECK(h.s->in_flight() == 0);
}

TEST_CASE("duplicate tag in flight closes the connection") {
  Harness h;
  h.Ready();
  h.Send(10, Tgetattr{0, kGetattrAll});
  h.Send(10, Tgetattr{0, kGetattrAll});
  CHECK(h.closed);
}

TEST_CASE("flush: Rflush after the flushed reply; immediate when idle") {
  Harness h;
  h.Ready();
  h.Send(10, Tgetattr{0, kGetattrAll});
  h.Send(11, Tflush{10});
  h.Send(12, Tflush{10});
  CHECK(h.replies.empty());
  h.fs.Complete(0, Rgetattr{});
  REQUIRE(h.replies.size() == 3);
  CHECK(h.replies[0].first == 10);
  CHECK(h.replies[1].first == 11);
  CHECK(std::holds_alternative<Rflush>(h.replies[1].second));
  CHECK(h.replies[2].first == 12);
  h.Send(13, Tflush{999});
  CHECK(h.replies.back().first == 13);
  CHECK(std::holds_alternative<Rflush>(h.Last()));
}

TEST_CASE("fid rules") {
  Harness h;
  h.Ready();
  h.Send(1, Tgetattr{42, 0});
  CHECK(h.LastErr() == EBADF);
  h.Send(1, Tattach{0, kNoFid, "", "", 0});
  CHECK(h.LastErr() == EBADF);  // fid in use
  h.Send(1, Twalk{0, 0, {}});  // in place, from an unopened fid: fine
  REQUIRE(h.fs.pending.size() == 1);
  h.fs.Complete(0, Rwalk{});
  h.Send(2, Twalk{0, 5, {"a", "b"}});
  h.fs.Complete(0, Rwalk{{Qid{kQtDir, 0, 2}}});  // partial: newfid not made
  h.Send(3, Tgetattr{5, 0});
  CHECK(h.LastErr() == EBADF);
  h.Send(4, Twalk{0, 5, {"a"}});
  h.fs.Complete(0, Rwalk{{Qid{kQtFile, 0, 9}}});
  h.Send(5, Tread{5, 0, 10});
  CHECK(h.LastErr() == EBADF);  // not open
  h.Send(6, Tlopen{5, O_RDONLY});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(h.fs.pending[0].req.ino == 9);
  h.fs.Complete(0, Rlopen{Qid{kQtFile, 0, 9}, 0});
  h.Send(7, Twrite{5, 0, Data{"x"}});
  CHECK(h.LastErr() == EBADF);  // read-only
  h.Send(8, Twalk{5, 5, {}});
  CHECK(h.LastErr() == EBUSY);  // walk in place from an open fid
  h.Send(9, Tread{5, 0, 1 << 20});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(std::get<Tread>(h.fs.pending[0].req.msg).count == 65536 - kIoHeaderSize);
  h.fs.Complete(0, Rread{});
  // A read-only fid is clunked at once; its reference is released.
  h.Send(10, Tclunk{5});
  CHECK(std::holds_alternative<Rclunk>(h.Last()));
  CHECK(h.fs.pending.empty());
  CHECK(h.fs.released.back() == 9);
  // A fid open for writing goes to the file system (it may flush), and a
  // failed clunk still frees the fid.
  h.Send(11, Twalk{0, 6, {"w"}});
  h.fs.Complete(0, Rwalk{{Qid{kQtFile, 0, 10}}});
  h.Send(12, Tlopen{6, O_RDWR});
  h.fs.Complete(0, Rlopen{Qid{kQtFile, 0, 10}, 0});
  h.Send(13, Tclunk{6});
  REQUIRE(h.fs.pending.size() == 1);
  h.fs.Complete(0, Rlerror{EIO});
  CHECK(h.LastErr() == EIO);
  h.Send(14, Tclunk{6});
  CHECK(h.LastErr() == EBADF);
}

TEST_CASE("disconnect releases fids, including those of requests in flight") {
  Harness h;
  h.Ready();
  h.Send(1, Twalk{0, 3, {"x"}});
  h.s->Shutdown();
  CHECK(h.fs.released == std::vector<uint64_t>{1});
  size_t before = h.replies.size();
  h.fs.Complete(0, Rwalk{{Qid{kQtFile, 0, 7}}});
  CHECK(h.replies.size() == before);  // nothing sent after shutdown
  CHECK(h.fs.released == std::vector<uint64_t>{1, 7});
}

TEST_CASE("xattr fids: write then commit at clunk, read from the walk result") {
  Harness h;
  h.Ready();
  h.Send(1, Twalk{0, 1, {}});
  h.fs.Complete(0, Rwalk{});
  h.Send(2, Txattrcreate{1, "user.k", 3, 0});
  CHECK(std::holds_alternative<Rxattrcreate>(h.Last()));
  h.Send(3, Twrite{1, 0, Data{"abc"}});
  CHECK(std::get<Rwrite>(h.Last()).count == 3);
  h.Send(4, Tclunk{1});
  REQUIRE(h.fs.pending.size() == 1);
  REQUIRE(h.fs.pending[0].req.xattr);
  CHECK(h.fs.pending[0].req.xattr->value == "abc");
  h.fs.Complete(0, Rclunk{});
  h.Send(5, Txattrwalk{0, 2, "user.k"});
  auto p = std::move(h.fs.pending[0]);
  h.fs.pending.clear();
  p.done(FsReply{Rxattrwalk{3}, "abc"});
  h.Send(6, Tread{2, 1, 10});
  CHECK(std::get<Rread>(h.Last()).data.bytes == "bc");
}

TEST_CASE("a fid being rebound: later requests on it wait, replies come in request order") {
  Harness h;
  h.Ready();
  h.Send(2, Twalk{0, 2, {"f"}});
  h.fs.Complete(0, Rwalk{{Qid{0, 0, 7}}});  // fid 2 -> inode 7, one reference
  h.replies.clear();
  // Pipelined: walk fid 2 onto itself (no names), then clunk it.
  h.Send(3, Twalk{2, 2, {}});
  h.Send(4, Tclunk{2});
  CHECK(h.replies.empty());  // the clunk waits for the walk
  REQUIRE(h.fs.pending.size() == 1);
  h.fs.Complete(0, Rwalk{{}});  // the file system moved the reference 7 -> 7
  REQUIRE(h.replies.size() == 2);
  CHECK(h.replies[0].first == 3);
  CHECK(std::holds_alternative<Rwalk>(h.replies[0].second));
  CHECK(h.replies[1].first == 4);
  CHECK(std::holds_alternative<Rclunk>(h.replies[1].second));
  // Exactly one reference given back.
  CHECK(h.fs.released == std::vector<uint64_t>{7});
}

TEST_CASE("a fid rebound by Tlcreate: a pipelined read waits and sees the new file") {
  Harness h;
  h.Ready();
  h.Send(2, Twalk{0, 2, {}});
  h.fs.Complete(0, Rwalk{{}});
  h.replies.clear();
  h.Send(3, Tlcreate{2, "new", O_RDWR, 0644, 0});
  h.Send(4, Tread{2, 0, 100});
  REQUIRE(h.fs.pending.size() == 1);
  h.fs.Complete(0, Rlcreate{Qid{0, 0, 9}, 0});
  REQUIRE(h.fs.pending.size() == 1);  // the read, on the created file
  CHECK(h.fs.pending[0].req.ino == 9);
  h.fs.Complete(0, Rread{});
  REQUIRE(h.replies.size() == 2);
  CHECK(h.replies[0].first == 3);
  CHECK(h.replies[1].first == 4);
}

TEST_CASE("a reset while a fid is rebound gives back exactly one reference") {
  Harness h;
  h.Ready();
  h.Send(2, Twalk{0, 2, {"a"}});
  h.fs.Complete(0, Rwalk{{Qid{0, 0, 7}}});
  h.Send(3, Twalk{2, 2, {"b"}});  // fid 2: 7 -> 8, in flight
  h.Send(kNoTag, Tversion{1 << 20, "9P2000.L"});  // reset
  std::vector<uint64_t> at_reset = h.fs.released;
  CHECK(std::count(at_reset.begin(), at_reset.end(), 7) == 0);  // the walk owns it
  h.fs.Complete(0, Rwalk{{Qid{0, 0, 8}}});  // moved 7 -> 8
  CHECK(std::count(h.fs.released.begin(), h.fs.released.end(), 8) == 1);
  CHECK(std::count(h.fs.released.begin(), h.fs.released.end(), 7) == 0);
}

TEST_CASE("the attach root cannot be removed or renamed through its fid") {
  Harness h;
  h.Ready();
  h.Send(2, Tremove{0});
  CHECK(h.LastErr() == EBUSY);
  CHECK(h.fs.pending.empty());
  CHECK(h.fs.released == std::vector<uint64_t>{1});  // Tremove clunks the fid anyway
  h.Send(3, Tattach{5, kNoFid, "", "", 0});
  h.fs.Complete(0, Rattach{Qid{kQtDir, 0, 1}});
  h.Send(4, Trename{5, 5, "elsewhere"});
  CHECK(h.LastErr() == EBUSY);
}

TEST_CASE("a read-only identity gets no write lock") {
  FakeFs fs;
  LockTable locks;
  std::vector<Message> replies;
  SessionOptions o{65536, ENOENT, "test"};
  o.read_only = true;
  auto s = std::make_shared<Session>(
      fs, locks, o,
      [&](std::string f) {
        replies.push_back(Decode(reinterpret_cast<const uint8_t*>(f.data()), f.size()).msg);
      },
      [](const char*) {});
  auto send = [&](uint16_t tag, const Message& m) {
    std::string f;
    Encode(tag, m, f);
    s->OnFrame(reinterpret_cast<const uint8_t*>(f.data()), f.size());
  };
  send(kNoTag, Tversion{1 << 20, "9P2000.L"});
  send(1, Tattach{0, kNoFid, "", "", 0});
  fs.Complete(0, Rattach{Qid{kQtDir, 0, 1}});
  send(2, Tlock{0, kLockWrite, 0, 0, 0, 1, "c"});
  auto* e = std::get_if<Rlerror>(&replies.back());
  REQUIRE(e);
  CHECK(e->ecode == EROFS);
  send(3, Tlock{0, kLockRead, 0, 0, 0, 1, "c"});
  CHECK(std::holds_alternative<Rlock>(replies.back()));
  s->Shutdown();
}
