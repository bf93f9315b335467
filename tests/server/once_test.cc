// Operation ids (Tonce, 9p/messages.h; musclefs(8) PROTOCOL) through a
// session on the store's file system: a request resent with its id is
// answered from the reply recorded the first time, also after a restart,
// with that reply's effects on the session's fids; after a crash before
// the commit it runs again; ids are per identity; the records are pruned.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <thread>

#include "9p/codec.h"
#include "9p/session.h"
#include "tests/server/store_fs_rig.h"
#include "tests/store/store_test_util.h"

using namespace muscle;
using namespace muscle::p9;
using namespace muscle::test;

namespace {

constexpr size_t kWriteAhead = server::WriteAhead::kDefaultLimit;

// A 9P2000.L session of `identity` on the rig's file system, as a
// connection holds one, attached with fid 0 to the root. Call sends one
// request and runs the rig's loop until its reply.
struct Conn {
  Rig& rig;
  LockTable locks;
  std::shared_ptr<Session> s;
  std::vector<Message> replies;
  uint16_t tag = 1;
  Conn(Rig& r, const std::string& identity) : rig(r) {
    SessionOptions o;
    o.peer = "test";
    o.identity = identity;
    s = std::make_shared<Session>(
        *rig.fs, locks, o,
        [this](std::string f) {
          Decoded d = Decode(reinterpret_cast<const uint8_t*>(f.data()), f.size());
          REQUIRE(d.status == DecodeStatus::kOk);
          replies.push_back(std::move(d.msg));
        },
        [](const char* why) { FAIL(why); });
    REQUIRE(std::holds_alternative<Rversion>(Call(Tversion{65536, "9P2000.L"})));
    REQUIRE(std::holds_alternative<Rattach>(Call(Tattach{0, kNoFid, "", "", 0})));
  }
  ~Conn() { s->Shutdown(); }
  Message Call(const Message& m) {
    std::string f;
    Encode(std::holds_alternative<Tversion>(m) ? kNoTag : tag++, m, f);
    size_t before = replies.size();
    s->OnFrame(reinterpret_cast<const uint8_t*>(f.data()), f.size());
    rig.RunUntil([&] { return replies.size() > before; }, 5s);
    REQUIRE(replies.size() == before + 1);
    return replies.back();
  }
  // `inner` inside a Tonce with id `op`.
  Message Once(uint64_t op, const Message& inner) {
    std::string frame;
    Encode(0, inner, frame);
    return Call(Tonce{op, Data{frame}});
  }
};

int Err(const Message& m) {
  auto* e = std::get_if<Rlerror>(&m);
  return e ? int(e->ecode) : 0;
}

// The qid of an Rmkdir (a failure, and no qid, for anything else).
Qid MkdirQid(const Message& m) {
  INFO("reply error " << Err(m));
  CHECK(std::holds_alternative<Rmkdir>(m));
  auto* r = std::get_if<Rmkdir>(&m);
  return r ? r->qid : Qid{0xff, 0, 0};
}

// Directory entries named `name` (committed), in the store at dir.
int64_t Entries(const std::string& dir, const std::string& name) {
  std::string sql = "SELECT count(*) FROM dirents WHERE CAST(name AS TEXT)='" + name + "'";
  return Count(dir + "/store.db", sql.c_str());
}

}  // namespace

TEST_CASE("Tonce: a request resent with its id is answered from its first reply, per identity") {
  TempDir dir;
  Rig rig(nullptr, kWriteAhead, dir.path);
  Conn c(rig, "laptop");
  Qid q = MkdirQid(c.Once(7, Tmkdir{0, "d", 0755, 0}));
  CHECK(MkdirQid(c.Once(7, Tmkdir{0, "d", 0755, 0})) == q);
  // Without the id the request runs again.
  CHECK(Err(c.Call(Tmkdir{0, "d", 0755, 0})) == EEXIST);
  // An error is an answer too: it stays the answer to its id.
  CHECK(Err(c.Once(8, Tunlinkat{0, "later", 0})) == ENOENT);
  MkdirQid(c.Call(Tmkdir{0, "later", 0755, 0}));
  CHECK(Err(c.Once(8, Tunlinkat{0, "later", 0x200})) == ENOENT);
  // Another identity's id 7 is its own.
  Conn other(rig, "phone");
  Qid p = MkdirQid(other.Once(7, Tmkdir{0, "p", 0755, 0}));
  CHECK(p.path != q.path);
  CHECK(std::holds_alternative<Rwalk>(other.Call(Twalk{0, 1, {"p"}})));
  // An id used again for another request is refused, not answered with
  // a reply of another kind.
  CHECK(Err(c.Once(7, Tsymlink{0, "s", "t", 0})) == EINVAL);
  REQUIRE(std::holds_alternative<Rfsync>(c.Call(Tfsync{0, 0})));
  CHECK(Entries(dir.path, "d") == 1);
  CHECK(Entries(dir.path, "p") == 1);
  CHECK(Entries(dir.path, "s") == 0);
}

TEST_CASE("Tonce: after a restart a resent request is answered from the committed record") {
  TempDir dir;
  Qid d, f;
  {
    Rig rig(nullptr, kWriteAhead, dir.path);
    Conn c(rig, "laptop");
    d = MkdirQid(c.Once(1, Tmkdir{0, "d", 0755, 0}));
    MkdirQid(c.Call(Tmkdir{0, "gone", 0755, 0}));
    CHECK(std::holds_alternative<Runlinkat>(c.Once(2, Tunlinkat{0, "gone", 0x200})));
    REQUIRE(std::holds_alternative<Rwalk>(c.Call(Twalk{0, 1, {}})));
    auto created = c.Once(3, Tlcreate{1, "f", O_RDWR, 0644, 0});
    REQUIRE(std::holds_alternative<Rlcreate>(created));
    f = std::get<Rlcreate>(created).qid;
    // The file is written once before: a plain Twrite now would be
    // answered ahead of the writer (server/write_ahead.h); one with an id
    // must not be, or nothing would record it.
    REQUIRE(std::holds_alternative<Rwrite>(c.Call(Twrite{1, 0, Data{"hel"}})));
    REQUIRE(std::holds_alternative<Rwrite>(c.Once(4, Twrite{1, 3, Data{"lo"}})));
    REQUIRE(std::holds_alternative<Rfsync>(c.Call(Tfsync{0, 0})));
    CHECK(Count(dir.path + "/store.db", "SELECT count(*) FROM op_results WHERE op=4") == 1);
  }
  // A new server on the same files; the client's fids bound again (here
  // by walking) and its unanswered requests resent with their ids.
  Rig rig(nullptr, kWriteAhead, dir.path);
  Conn c(rig, "laptop");
  CHECK(MkdirQid(c.Once(1, Tmkdir{0, "d", 0755, 0})) == d);
  CHECK(std::holds_alternative<Runlinkat>(c.Once(2, Tunlinkat{0, "gone", 0x200})));
  // The create's record makes the fid the file's, open, as the first
  // reply did: a write through it works.
  REQUIRE(std::holds_alternative<Rwalk>(c.Call(Twalk{0, 1, {}})));
  auto created = c.Once(3, Tlcreate{1, "f", O_RDWR, 0644, 0});
  REQUIRE(std::holds_alternative<Rlcreate>(created));
  CHECK(std::get<Rlcreate>(created).qid.path == f.path);
  CHECK(Err(c.Call(Tlopen{1, O_RDONLY})) == EBUSY);  // open already
  auto w = c.Once(4, Twrite{1, 3, Data{"lo"}});
  REQUIRE(std::holds_alternative<Rwrite>(w));
  CHECK(std::get<Rwrite>(w).count == 2);
  REQUIRE(std::holds_alternative<Rwrite>(c.Call(Twrite{1, 5, Data{" world"}})));
  // The fid holds a reference on the file, as after the first reply:
  // unlinked, the file lives on while the fid names it.
  REQUIRE(std::holds_alternative<Runlinkat>(c.Call(Tunlinkat{0, "f", 0})));
  auto r = c.Call(Tread{1, 0, 100});
  INFO("read error " << Err(r));
  REQUIRE(std::holds_alternative<Rread>(r));
  CHECK(std::get<Rread>(r).data.bytes == "hello world");
  REQUIRE(std::holds_alternative<Rclunk>(c.Call(Tclunk{1})));
  REQUIRE(std::holds_alternative<Rfsync>(c.Call(Tfsync{0, 0})));
  CHECK(Entries(dir.path, "d") == 1);
  CHECK(Entries(dir.path, "gone") == 0);
  std::string inode = "SELECT count(*) FROM inodes WHERE ino=" + std::to_string(f.path);
  CHECK(Count(dir.path + "/store.db", inode.c_str()) == 0);  // gone with the fid
}

TEST_CASE("Tonce: after a crash before the commit, the redo log keeps the change with its reply; without it the request runs again") {
  // The redo log lost: as after a crash of the machine (it is not synced).
  bool redo_lost = GENERATE(false, true);
  TempDir dir;
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child runs the request and dies before any commit (no close,
    // no final commit: the files as kill -9 leaves them).
    close(fds[0]);
    try {
      Rig rig([](store::Store& s) { s.commit_interval = std::chrono::hours(1); }, kWriteAhead,
              dir.path);
      Conn c(rig, "laptop");
      uint8_t made = std::holds_alternative<Rmkdir>(c.Once(7, Tmkdir{0, "d", 0755, 0}));
      if (write(fds[1], &made, 1) != 1) _exit(5);
      _exit(0);
    } catch (...) {
      _exit(3);
    }
  }
  close(fds[1]);
  uint8_t made = 0;
  CHECK(read(fds[0], &made, 1) == 1);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(made == 1);
  if (redo_lost) REQUIRE(unlink((dir.path + "/store.db-redo").c_str()) == 0);
  Rig rig(nullptr, kWriteAhead, dir.path);
  Conn c(rig, "laptop");
  if (redo_lost) {
    // The crash took the directory and its record together.
    CHECK(Err(c.Call(Twalk{0, 1, {"d"}})) == ENOENT);
    MkdirQid(c.Once(7, Tmkdir{0, "d", 0755, 0}));  // ran again (not EEXIST)
  } else {
    // Replayed together: the resent request is answered, not run again.
    auto made_qid = MkdirQid(c.Once(7, Tmkdir{0, "d", 0755, 0}));
    auto walked = c.Call(Twalk{0, 2, {"d"}});
    REQUIRE(std::holds_alternative<Rwalk>(walked));
    CHECK(std::get<Rwalk>(walked).wqids.back().path == made_qid.path);
  }
  CHECK(std::holds_alternative<Rwalk>(c.Call(Twalk{0, 1, {"d"}})));
  REQUIRE(std::holds_alternative<Rfsync>(c.Call(Tfsync{0, 0})));
  CHECK(Entries(dir.path, "d") == 1);
}

TEST_CASE("Tonce: records are pruned past their retention and past an identity's cap") {
  TempDir dir;
  std::string db = dir.path + "/store.db";
  auto s = OpenStore(db);
  s->commit_interval = std::chrono::milliseconds(0);
  s->op_prune_interval = std::chrono::milliseconds(0);
  auto run = [&](const std::string& identity, std::optional<uint64_t> op, const std::string& name) {
    FsRequest req;
    req.msg = Tmkdir{0, name, 0755, 0};
    req.ino = store::kRootIno;
    req.root_ino = store::kRootIno;
    req.op = op;
    req.identity = identity;
    return Err(server::StoreFileSystem::Execute(*s, req).msg);
  };
  REQUIRE(run("a", 1, "d1") == 0);
  REQUIRE(s->Tick().ok());  // prunes (nothing young) and commits
  CHECK(Count(db, "SELECT count(*) FROM op_results") == 1);
  CHECK(run("a", 1, "d1") == 0);  // answered
  s->op_retention = std::chrono::milliseconds(0);
  std::this_thread::sleep_for(2ms);
  REQUIRE(run("a", std::nullopt, "x") == 0);  // a transaction to prune in
  REQUIRE(s->Tick().ok());
  CHECK(Count(db, "SELECT count(*) FROM op_results") == 0);
  CHECK(run("a", 1, "d1") == EEXIST);  // runs again: its record is gone
  // At most ops_per_identity per identity: the newest stay.
  s->op_retention = store::Store::kOpRetention;
  s->ops_per_identity = 2;
  for (uint64_t op = 10; op < 14; op++) REQUIRE(run("a", op, "e" + std::to_string(op)) == 0);
  REQUIRE(run("b", 10, "f10") == 0);
  REQUIRE(s->Tick().ok());
  CHECK(Count(db, "SELECT count(*) FROM op_results WHERE identity='a'") == 2);
  CHECK(Count(db, "SELECT min(op) FROM op_results WHERE identity='a'") == 12);
  CHECK(Count(db, "SELECT count(*) FROM op_results WHERE identity='b'") == 1);
  CHECK(run("a", 13, "e13") == 0);       // kept: answered
  CHECK(run("a", 10, "e10") == EEXIST);  // dropped: runs again
  RequireClean(*s);
}

TEST_CASE("Tonce: records outlive a downtime longer than their retention") {
  // A request resent after a long outage must still find its record:
  // nothing is pruned by age until op_retention after the store opened.
  TempDir dir;
  std::string db = dir.path + "/store.db";
  auto mkdir_once = [&](store::Store& s) {
    FsRequest req;
    req.msg = Tmkdir{0, "d", 0755, 0};
    req.ino = store::kRootIno;
    req.root_ino = store::kRootIno;
    req.op = 5;
    req.identity = "a";
    return Err(server::StoreFileSystem::Execute(s, req).msg);
  };
  {
    auto s = OpenStore(db);
    REQUIRE(mkdir_once(*s) == 0);
    REQUIRE(s->Sync(true).ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // "down" longer than retention
  auto s = OpenStore(db);
  s->commit_interval = std::chrono::milliseconds(0);
  s->op_prune_interval = std::chrono::milliseconds(0);
  s->op_retention = std::chrono::milliseconds(300);
  REQUIRE(mkdir_once(*s) == 0);  // answered from the record, after a Tick below too
  REQUIRE(s->Tick().ok());
  CHECK(Count(db, "SELECT count(*) FROM op_results") == 1);
  CHECK(mkdir_once(*s) == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  FsRequest other;
  other.msg = Tmkdir{0, "x", 0755, 0};
  other.ino = other.root_ino = store::kRootIno;
  REQUIRE(Err(server::StoreFileSystem::Execute(*s, other).msg) == 0);  // a transaction
  REQUIRE(s->Tick().ok());
  CHECK(Count(db, "SELECT count(*) FROM op_results") == 0);  // now it goes
}
