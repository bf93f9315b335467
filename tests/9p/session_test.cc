// Session rules with a scripted file system: version/msize, tags, fids,
// flush ordering and open-state checks, without sockets or SQLite.
#include <fcntl.h>

#include <catch2/catch.hpp>
#include <cstring>
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
  void Unref(uint64_t ino) override { released.push_back(ino); }
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
  explicit Harness(SessionOptions options = {65536, ENOENT, "test"}) {
    s = std::make_shared<Session>(
        fs, locks, std::move(options),
        [this](std::string f) {
          Decoded d = Decode(reinterpret_cast<const uint8_t*>(f.data()), f.size(), s->dialect());
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
    if (auto* e = std::get_if<Rlerror>(&replies.back().second)) return int(e->ecode);
    if (auto* e = std::get_if<RerrorU>(&replies.back().second)) return int(e->errnum);
    if (auto* e = std::get_if<Rerror>(&replies.back().second))
      return e->ename.empty() ? -1 : ErrnoOfText(e->ename);
    return 0;
  }
  // 9P2000's Rerror carries only strerror's text.
  static int ErrnoOfText(const std::string& text) {
    for (int e = 1; e < 200; e++)
      if (text == strerror(e)) return e;
    return -1;
  }
  // version + attach fid 0 to inode 1.
  void Ready(const char* version = "9P2000.L") {
    Send(kNoTag, Tversion{1 << 20, version});
    if (std::string(version) == "9P2000") Send(1, Tattach2000{0, kNoFid, "", ""});
    else Send(1, Tattach{0, kNoFid, "", "", 0});
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
  h.Send(kNoTag, Tversion{8192, "9P2001"});
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

TEST_CASE("requests pipelined on a fid being made wait for its Rattach, Rwalk or Rrebind") {
  Harness h;
  h.Send(kNoTag, Tversion{1 << 20, "9P2000.L"});
  h.Send(1, Tattach{0, kNoFid, "", "", 0});
  h.Send(2, Tgetattr{0, kGetattrAll});  // before the Rattach
  REQUIRE(h.fs.pending.size() == 1);     // the getattr waits
  h.fs.Complete(0, Rattach{Qid{kQtDir, 0, 1}});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(h.fs.pending[0].req.ino == 1);
  h.fs.Complete(0, Rgetattr{});
  REQUIRE(h.replies.size() == 3);
  CHECK(std::holds_alternative<Rattach>(h.replies[1].second));
  CHECK(std::holds_alternative<Rgetattr>(h.replies[2].second));
  // A walk to a new fid, and a read pipelined on it.
  h.Send(3, Twalk{0, 5, {"f"}});
  h.Send(4, Tlopen{5, O_RDONLY});
  REQUIRE(h.fs.pending.size() == 1);
  h.fs.Complete(0, Rwalk{{Qid{0, 0, 7}}});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(h.fs.pending[0].req.ino == 7);
  h.fs.Complete(0, Rlopen{});
  // An xattr walk to a new fid, and a read of the value pipelined on it.
  h.replies.clear();
  h.Send(7, Txattrwalk{0, 6, "user.k"});
  h.Send(8, Tread{6, 0, 10});
  REQUIRE(h.replies.empty());  // the read waits for the Rxattrwalk
  REQUIRE(h.fs.pending.size() == 1);
  {
    auto p = std::move(h.fs.pending[0]);
    h.fs.pending.clear();
    p.done(FsReply{Rxattrwalk{3}, "abc"});
  }
  REQUIRE(h.replies.size() == 2);
  CHECK(std::holds_alternative<Rxattrwalk>(h.replies[0].second));
  CHECK(std::get<Rread>(h.replies[1].second).data.bytes == "abc");
  // A failed attach: what waited for it gets EBADF, after the error.
  h.replies.clear();
  h.Send(5, Tattach{9, kNoFid, "", "nope", 0});
  h.Send(6, Tgetattr{9, kGetattrAll});
  REQUIRE(h.fs.pending.size() == 1);
  h.fs.Complete(0, Rlerror{ENOENT});
  REQUIRE(h.replies.size() == 2);
  CHECK(h.replies[0].first == 5);
  CHECK(h.replies[1].first == 6);
  CHECK(h.LastErr() == EBADF);
  CHECK(h.fs.pending.empty());
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
  o.rule.read_only = true;
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

// --- 9P2000 and 9P2000.u ---

TEST_CASE("Tversion chooses the dialect; each dialect answers errors its own way") {
  Harness h;
  h.Send(kNoTag, Tversion{1 << 20, "9P2000"});
  CHECK(std::get<Rversion>(h.Last()).version == "9P2000");
  CHECK(h.s->dialect() == k9P2000);
  h.Send(1, Tclunk{9});
  REQUIRE(std::holds_alternative<Rerror>(h.Last()));
  CHECK(std::get<Rerror>(h.Last()).ename == strerror(EBADF));
  // A 9P2000.L message is not part of 9P2000.
  h.Send(2, Tlopen{0, 0});
  CHECK(h.LastErr() == EOPNOTSUPP);
  h.Send(kNoTag, Tversion{1 << 20, "9P2000.u"});
  CHECK(std::get<Rversion>(h.Last()).version == "9P2000.u");
  h.Send(3, Tclunk{9});
  REQUIRE(std::holds_alternative<RerrorU>(h.Last()));
  CHECK(std::get<RerrorU>(h.Last()).errnum == EBADF);
  // version(5): an unknown "9P2000.x" gets the base protocol.
  h.Send(kNoTag, Tversion{1 << 20, "9P2000.x"});
  CHECK(std::get<Rversion>(h.Last()).version == "9P2000");
  h.Send(kNoTag, Tversion{1 << 20, "9P2000.L"});
  CHECK(h.s->dialect() == k9P2000L);
  h.Send(4, Tclunk{9});
  CHECK(std::holds_alternative<Rlerror>(h.Last()));
  // An error from the file system is translated too.
  h.Send(kNoTag, Tversion{1 << 20, "9P2000.u"});
  h.Send(5, Tattach{0, kNoFid, "", "", 0});
  h.fs.Complete(0, Rlerror{ENOENT});
  CHECK(std::get<RerrorU>(h.Last()).errnum == ENOENT);
  CHECK(std::get<RerrorU>(h.Last()).ename == strerror(ENOENT));
}

TEST_CASE("9P2000 attach: a decimal uname is the uid, other names are nobody") {
  Harness h;
  h.Send(kNoTag, Tversion{1 << 20, "9P2000"});
  h.Send(1, Tattach2000{0, kNoFid, "1000", ""});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(std::holds_alternative<Tattach>(h.fs.pending[0].req.msg));  // the .u form
  CHECK(h.fs.pending[0].req.uid == 1000);
  h.fs.Complete(0, Rattach{Qid{kQtDir, 0, 1}});
  h.Send(2, Tattach2000{1, kNoFid, "glenda", ""});
  CHECK(h.fs.pending[0].req.uid == 65534);
  h.fs.Complete(0, Rattach{Qid{kQtDir, 0, 1}});
  h.Send(kNoTag, Tversion{1 << 20, "9P2000.u"});
  h.Send(3, Tattach{0, kNoFid, "glenda", "", 77});  // n_uname wins
  CHECK(h.fs.pending[0].req.uid == 77);
}

TEST_CASE("Topen modes decide what a fid may read and write") {
  for (const char* version : {"9P2000", "9P2000.u"}) {
    INFO(version);
    Harness h;
    h.Ready(version);
    auto walk_open = [&](uint32_t fid, uint64_t ino, uint8_t qtype, uint8_t mode) {
      h.Send(10, Twalk{0, fid, {"x"}});
      h.fs.Complete(0, Rwalk{{Qid{qtype, 0, ino}}});
      h.Send(11, Topen{fid, mode});
      if (h.fs.pending.empty()) return;  // refused by the session
      CHECK(std::get<Topen>(h.fs.pending[0].req.msg).mode == mode);
      h.fs.Complete(0, Ropen{Qid{qtype, 0, ino}, 0});
    };
    walk_open(1, 5, kQtFile, kORead);
    h.Send(12, Twrite{1, 0, Data{"x"}});
    CHECK(h.LastErr() == EBADF);
    h.Send(13, Topen{1, kORead});
    CHECK(h.LastErr() == EBUSY);  // already open
    walk_open(2, 6, kQtFile, kOWrite);
    h.Send(14, Tread{2, 0, 10});
    CHECK(h.LastErr() == EBADF);
    h.Send(15, Twrite{2, 0, Data{"x"}});
    REQUIRE(h.fs.pending.size() == 1);
    h.fs.Complete(0, Rwrite{1});
    walk_open(3, 7, kQtFile, kOExec);  // OEXEC reads
    h.Send(16, Tread{3, 0, 10});
    REQUIRE(h.fs.pending.size() == 1);
    CHECK(!h.fs.pending[0].req.dir_cookie);  // a file read, not a directory one
    h.fs.Complete(0, Rread{});
    walk_open(4, 8, kQtFile, kORdwr | kOTrunc);
    h.Send(17, Tread{4, 0, 10});
    h.fs.Complete(0, Rread{});
    h.Send(18, Twrite{4, 0, Data{"x"}});
    h.fs.Complete(0, Rwrite{1});
    CHECK(std::holds_alternative<Rwrite>(h.Last()));
    // Directories: read only, never truncated or removed at close.
    for (uint8_t bad : {uint8_t(kOWrite), uint8_t(kORdwr), uint8_t(kORead | kOTrunc),
                        uint8_t(kORead | kORclose)}) {
      h.Send(19, Twalk{0, 9, {"d"}});
      h.fs.Complete(0, Rwalk{{Qid{kQtDir, 0, 20}}});
      h.Send(20, Topen{9, bad});
      CHECK(h.LastErr() == EISDIR);
      CHECK(h.fs.pending.empty());
      h.Send(21, Tclunk{9});
    }
  }
}

TEST_CASE("ORCLOSE removes the file at clunk") {
  Harness h;
  h.Ready("9P2000");
  h.Send(1, Twalk{0, 1, {"tmp"}});
  h.fs.Complete(0, Rwalk{{Qid{kQtFile, 0, 5}}});
  h.Send(2, Topen{1, kORdwr | kORclose});
  h.fs.Complete(0, Ropen{Qid{kQtFile, 0, 5}, 0});
  h.Send(3, Tclunk{1});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(std::holds_alternative<Tremove>(h.fs.pending[0].req.msg));
  CHECK(h.fs.pending[0].req.ino == 5);
  h.fs.Complete(0, Rremove{});
  CHECK(std::holds_alternative<Rclunk>(h.Last()));
  CHECK(h.s->fid_count() == 1);
  // Without ORCLOSE a read-only clunk never reaches the file system.
  h.Send(4, Twalk{0, 2, {"f"}});
  h.fs.Complete(0, Rwalk{{Qid{kQtFile, 0, 6}}});
  h.Send(5, Topen{2, kORead});
  h.fs.Complete(0, Ropen{Qid{kQtFile, 0, 6}, 0});
  h.Send(6, Tclunk{2});
  CHECK(h.fs.pending.empty());
  CHECK(std::holds_alternative<Rclunk>(h.Last()));
}

TEST_CASE("directory reads continue only from 0 or where the last read ended") {
  Harness h;
  h.Ready("9P2000.u");
  h.Send(1, Twalk{0, 1, {}});
  h.fs.Complete(0, Rwalk{});
  h.Send(2, Topen{1, kORead});
  h.fs.Complete(0, Ropen{Qid{kQtDir, 0, 1}, 0});
  auto read = [&](uint64_t offset) {
    h.Send(3, Tread{1, offset, 4096});
  };
  read(0);
  REQUIRE(h.fs.pending.size() == 1);
  REQUIRE(h.fs.pending[0].req.dir_cookie);
  CHECK(*h.fs.pending[0].req.dir_cookie == 0);
  FsReply page{Rread{Data{std::string(300, 's')}}, {}};
  page.next_cookie = 77;
  auto p = std::move(h.fs.pending[0]);
  h.fs.pending.clear();
  p.done(std::move(page));
  read(300);
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(*h.fs.pending[0].req.dir_cookie == 77);
  h.fs.Complete(0, Rread{});  // the end: offset stays at 300
  read(299);
  CHECK(h.LastErr() == EINVAL);
  CHECK(h.fs.pending.empty());
  read(300);
  CHECK(*h.fs.pending[0].req.dir_cookie == 77);
  h.fs.Complete(0, Rread{});
  read(0);  // rewind
  CHECK(*h.fs.pending[0].req.dir_cookie == 0);
  h.fs.Complete(0, Rread{});
}

TEST_CASE("Tcreate: the .u form for the file system, the fid opened on the new file") {
  Harness h;
  h.Ready("9P2000");
  h.Send(1, Twalk{0, 1, {}});
  h.fs.Complete(0, Rwalk{});
  h.Send(2, Tcreate{1, "new", 0644, kOWrite});
  REQUIRE(h.fs.pending.size() == 1);
  auto& c = std::get<TcreateU>(h.fs.pending[0].req.msg);
  CHECK(c.name == "new");
  CHECK(c.perm == 0644);
  CHECK(c.extension.empty());
  CHECK(h.fs.pending[0].req.dialect == k9P2000);
  h.Send(3, Twrite{1, 0, Data{"abc"}});  // waits for the create
  h.fs.Complete(0, Rcreate{Qid{kQtFile, 0, 9}, 0});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(h.fs.pending[0].req.ino == 9);
  h.fs.Complete(0, Rwrite{3});
  h.Send(4, Tread{1, 0, 10});
  CHECK(h.LastErr() == EBADF);  // opened OWRITE
  // Create needs an unopened directory fid; a directory is not created
  // open for writing.
  h.Send(5, Tcreate{1, "again", 0644, kORead});
  CHECK(h.LastErr() == EBUSY);
  h.Send(6, Twalk{0, 2, {"f"}});
  h.fs.Complete(0, Rwalk{{Qid{kQtFile, 0, 10}}});
  h.Send(7, Tcreate{2, "x", 0644, kORead});
  CHECK(h.LastErr() == ENOTDIR);
  h.Send(8, Twalk{0, 3, {}});
  h.fs.Complete(0, Rwalk{});
  h.Send(9, Tcreate{3, "d", kDmDir | 0755, kOWrite});
  CHECK(h.LastErr() == EISDIR);
  CHECK(h.fs.pending.empty());
}

TEST_CASE(".u Tcreate with DMLINK names the linked file by its fid") {
  Harness h;
  h.Ready("9P2000.u");
  h.Send(1, Twalk{0, 1, {"target"}});
  h.fs.Complete(0, Rwalk{{Qid{kQtFile, 0, 12}}});
  h.Send(2, Twalk{0, 2, {}});
  h.fs.Complete(0, Rwalk{});
  h.Send(3, TcreateU{2, "hard", kDmLink, kORead, "1\n"});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(h.fs.pending[0].req.ino2 == 12);
  h.fs.Complete(0, Rcreate{Qid{kQtFile, 0, 12}, 0});
  h.Send(4, Twalk{0, 3, {}});
  h.fs.Complete(0, Rwalk{});
  h.Send(5, TcreateU{3, "hard2", kDmLink, kORead, "99\n"});
  CHECK(h.LastErr() == EBADF);
}

TEST_CASE("Twstat: 9P2000's record arrives with .u's fields untouched; rules of the session") {
  Harness h;
  h.Ready("9P2000");
  Stat st = DontTouchStat();
  st.mode = 0600;
  st.name = "renamed";
  h.Send(1, Twalk{0, 1, {"f"}});
  h.fs.Complete(0, Rwalk{{Qid{kQtFile, 0, 5}}});
  h.Send(2, Twstat{1, st});
  REQUIRE(h.fs.pending.size() == 1);
  auto& w = std::get<TwstatU>(h.fs.pending[0].req.msg);
  CHECK(w.stat.mode == 0600);
  CHECK(w.stat.name == "renamed");
  CHECK(w.stat.n_uid == kNoUid);
  CHECK(w.stat.n_gid == kNoUid);
  CHECK(w.stat.extension.empty());
  h.fs.Complete(0, Rwstat{});
  CHECK(std::holds_alternative<Rwstat>(h.Last()));
  // The attach root is not renamed through itself.
  h.Send(3, Twstat{0, st});
  CHECK(h.LastErr() == EBUSY);
}

TEST_CASE("a read-only identity: reading opens and a sync wstat pass, changes get EROFS") {
  FakeFs fs;
  LockTable locks;
  std::vector<Message> replies;
  SessionOptions o{65536, ENOENT, "test"};
  o.rule.read_only = true;
  std::shared_ptr<Session> s;
  s = std::make_shared<Session>(
      fs, locks, o,
      [&](std::string f) {
        replies.push_back(
            Decode(reinterpret_cast<const uint8_t*>(f.data()), f.size(), s->dialect()).msg);
      },
      [](const char*) {});
  auto send = [&](uint16_t tag, const Message& m) {
    std::string f;
    Encode(tag, m, f);
    s->OnFrame(reinterpret_cast<const uint8_t*>(f.data()), f.size());
  };
  auto err = [&]() {
    auto* e = std::get_if<RerrorU>(&replies.back());
    return e ? int(e->errnum) : 0;
  };
  send(kNoTag, Tversion{1 << 20, "9P2000.u"});
  send(1, Tattach{0, kNoFid, "", "", 0});
  fs.Complete(0, Rattach{Qid{kQtDir, 0, 1}});
  send(2, Twalk{0, 1, {"f"}});
  fs.Complete(0, Rwalk{{Qid{kQtFile, 0, 5}}});
  for (uint8_t mode : {uint8_t(kOWrite), uint8_t(kORdwr), uint8_t(kORead | kOTrunc),
                       uint8_t(kORead | kORclose)}) {
    send(3, Topen{1, mode});
    CHECK(err() == EROFS);
  }
  send(4, TcreateU{0, "x", 0644, kORead, ""});
  CHECK(err() == EROFS);
  StatU chmod = DontTouchStat();
  chmod.mode = 0600;
  send(5, TwstatU{1, chmod});
  CHECK(err() == EROFS);
  send(6, TwstatU{1, DontTouchStat()});  // fsync
  REQUIRE(fs.pending.size() == 1);
  fs.Complete(0, Rwstat{});
  send(7, Topen{1, kORead});
  REQUIRE(fs.pending.size() == 1);
  fs.Complete(0, Ropen{Qid{kQtFile, 0, 5}, 0});
  CHECK(std::holds_alternative<Ropen>(replies.back()));
  s->Shutdown();
}

// A reply can make the transport hand the session its next frames at once
// (Connection's on_reply resumes reading): requests that arrive while the
// reply to a new fid's attach is going out may rebind that fid, and the
// attach, which never rebound it, must not end their rebinding.
TEST_CASE("requests arriving during a new fid's reply: a rebind of it is not ended by the attach") {
  Harness h;
  h.Send(kNoTag, Tversion{1 << 20, "9P2000.L"});
  h.Send(1, Tattach{1, kNoFid, "", "", 0});
  bool sent = false;
  h.s->on_reply = [&] {
    if (sent) return;
    sent = true;
    h.Send(2, Twalk{1, 1, {"a"}});  // rebinds fid 1
    h.Send(3, Tclunk{1});           // waits for the walk
  };
  h.fs.Complete(0, Rattach{Qid{kQtDir, 0, 1}});
  REQUIRE(h.fs.pending.size() == 1);  // the walk
  CHECK(h.replies.size() == 2);       // Rversion, Rattach; the clunk still waits
  CHECK(h.fs.released.empty());
  h.fs.Complete(0, Rwalk{{Qid{0, 0, 5}}});
  REQUIRE(h.replies.size() == 4);
  CHECK(std::holds_alternative<Rwalk>(h.replies[2].second));
  CHECK(std::holds_alternative<Rclunk>(h.replies[3].second));
  CHECK(h.fs.released == std::vector<uint64_t>{5});  // the walk's target, once
}

// Tonce (9p/messages.h): one frame of m (tag 0), as a Tonce carries it.
static std::string Frame(const Message& m) {
  std::string f;
  Encode(0, m, f);
  return f;
}

TEST_CASE("Tonce: the request inside runs with the outer tag, its id and identity handed on") {
  Harness h({65536, ENOENT, "test", "laptop"});
  h.Ready();
  h.Send(20, Tonce{0x1122334455667788ULL, Data{Frame(Tmkdir{0, "d", 0755, 0})}});
  REQUIRE(h.fs.pending.size() == 1);
  const FsRequest& req = h.fs.pending[0].req;
  REQUIRE(std::holds_alternative<Tmkdir>(req.msg));
  CHECK(std::get<Tmkdir>(req.msg).name == "d");
  CHECK(req.ino == 1);
  REQUIRE(req.op);
  CHECK(*req.op == 0x1122334455667788ULL);
  CHECK(req.identity == "laptop");
  // Tflush of the outer tag waits for the request inside, as for any.
  h.Send(21, Tflush{20});
  CHECK(h.replies.empty());
  h.fs.Complete(0, Rmkdir{Qid{kQtDir, 0, 9}});
  REQUIRE(h.replies.size() == 2);
  CHECK(h.replies[0].first == 20);
  CHECK(std::get<Rmkdir>(h.replies[0].second).qid.path == 9);
  CHECK(h.replies[1].first == 21);
  CHECK(std::holds_alternative<Rflush>(h.replies[1].second));
  CHECK(h.s->in_flight() == 0);
  // The tag is free again, and without a Tonce a request has no id.
  h.Send(20, Tmkdir{0, "e", 0755, 0});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(!h.fs.pending[0].req.op);
  h.fs.Complete(0, Rmkdir{Qid{kQtDir, 0, 10}});

  // A create inside: the fid is the new file's, open (a write reaches the
  // file system); a remove inside releases its fid.
  h.Send(22, Twalk{0, 1, {}});
  h.fs.Complete(0, Rwalk{});
  h.Send(23, Tonce{2, Data{Frame(Tlcreate{1, "f", O_RDWR, 0644, 0})}});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(h.fs.pending[0].req.op == std::optional<uint64_t>(2));
  h.fs.Complete(0, Rlcreate{Qid{kQtFile, 0, 11}, 0});
  h.Send(24, Tonce{3, Data{Frame(Twrite{1, 0, Data{"x"}})}});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(h.fs.pending[0].req.ino == 11);
  CHECK(h.fs.pending[0].req.op == std::optional<uint64_t>(3));
  h.fs.Complete(0, Rwrite{1});
  h.Send(25, Tonce{4, Data{Frame(Tremove{1})}});
  REQUIRE(h.fs.pending.size() == 1);
  CHECK(h.s->fid_count() == 1);
  h.fs.Complete(0, Rremove{});
  CHECK(std::holds_alternative<Rremove>(h.Last()));
}

TEST_CASE("Tonce: a frame inside that is not a whole kOnce request is EINVAL, never run") {
  Harness h;
  h.Ready();
  std::string mkdir = Frame(Tmkdir{0, "d", 0755, 0});
  std::string longer = mkdir;
  longer[0] = char(longer.size() + 1);  // a size field past the frame
  std::vector<std::string> refused = {
      "",
      mkdir.substr(0, 6),                                     // not even a header
      mkdir.substr(0, mkdir.size() - 1),                      // truncated
      mkdir + "x",                                            // a byte past it
      longer,
      Frame(Tread{0, 0, 10}),                                 // reads are not for Tonce
      Frame(Tfsync{0, 0}),
      Frame(Tversion{8192, "9P2000.L"}),
      Frame(Rmkdir{}),                                        // a reply
      Frame(Tonce{2, Data{mkdir}}),                           // nested
      Frame(Tcreate{0, "f", 0644, kORdwr}),                   // another dialect's
      std::string("\x07\x00\x00\x00\xc8\x00\x00", 7),        // an unknown type
  };
  uint16_t tag = 30;
  for (const std::string& inner : refused) {
    INFO("inner frame of " << inner.size() << " bytes");
    h.Send(tag++, Tonce{1, Data{inner}});
    CHECK(h.fs.pending.empty());
    CHECK(h.LastErr() == EINVAL);
    CHECK(h.replies.back().first == tag - 1);
    CHECK(h.s->in_flight() == 0);
  }
  // Larger than msize (a transport refuses such a Tonce before, but the
  // frame inside is checked all the same).
  Harness small({8192, ENOENT, "test"});
  small.Ready();
  std::string big = Frame(Twrite{0, 0, Data{std::string(9000, 'x')}});
  small.Send(40, Tonce{1, Data{big}});
  CHECK(small.fs.pending.empty());
  CHECK(small.LastErr() == EINVAL);
  CHECK(!h.closed);
  CHECK(!small.closed);
}

TEST_CASE("Tonce: the request inside keeps its session rules (read-only, dialect)") {
  SessionOptions ro{65536, ENOENT, "test", "reader"};
  ro.rule.read_only = true;
  Harness h(ro);
  h.Ready();
  h.Send(20, Tonce{1, Data{Frame(Tmkdir{0, "d", 0755, 0})}});
  CHECK(h.fs.pending.empty());
  CHECK(h.LastErr() == EROFS);
  h.Send(21, Tonce{2, Data{Frame(Tunlinkat{7, "d", 0})}});
  CHECK(h.LastErr() == EROFS);
  // An unknown fid inside is EBADF, as alone.
  Harness w;
  w.Ready();
  w.Send(22, Tonce{3, Data{Frame(Tmkdir{9, "d", 0755, 0})}});
  CHECK(w.fs.pending.empty());
  CHECK(w.LastErr() == EBADF);
  // 9P2000.u has no Tonce.
  Harness u;
  u.Ready("9P2000.u");
  u.Send(23, Tonce{4, Data{Frame(Tmkdir{0, "d", 0755, 0})}});
  CHECK(u.fs.pending.empty());
  CHECK(u.LastErr() == EOPNOTSUPP);
}
