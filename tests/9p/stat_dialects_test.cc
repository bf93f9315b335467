// 9P2000 and 9P2000.u on the store (server/stat_dialects.h), driven through
// StoreFileSystem::Execute on an in-memory store: create rules, the stat
// record, every "don't touch" field of Twstat, renames, and directory
// reads as stat records.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <catch2/catch.hpp>
#include <set>

#include "9p/codec.h"
#include "9p/wire.h"
#include "server/stat_dialects.h"
#include "server/store_filesystem.h"
#include "store/store.h"

using namespace muscle;
using namespace muscle::p9;
using muscle::server::StoreFileSystem;
using store::kRootIno;

namespace {

struct Fs {
  std::unique_ptr<store::Store> s;
  Dialect dialect;
  explicit Fs(Dialect d) : dialect(d) {
    auto r = store::Store::Open(":memory:");
    REQUIRE(r.ok());
    s = std::move(*r);
  }
  FsReply Run(Message m, uint64_t ino, uint64_t ino2 = 0) {
    FsRequest req{std::move(m), ino, ino2};
    req.uid = 1000;
    req.dialect = dialect;
    return StoreFileSystem::Execute(*s, req);
  }
  int Err(const FsReply& r) {
    auto* e = std::get_if<Rlerror>(&r.msg);
    return e ? int(e->ecode) : 0;
  }
  // Creates `name` in the root; returns its inode (the reference the
  // create gave the "fid" is left to the store).
  uint64_t Create(const std::string& name, uint32_t perm, const std::string& ext = "") {
    s->Ref(kRootIno);
    FsReply r = Run(TcreateU{0, name, perm, kORdwr, ext}, kRootIno);
    INFO(name << " errno " << Err(r));
    REQUIRE(std::holds_alternative<Rcreate>(r.msg));
    return std::get<Rcreate>(r.msg).qid.path;
  }
  store::Attr Attr(uint64_t ino) {
    auto a = s->GetAttr(ino);
    REQUIRE(a.ok());
    return *a;
  }
  StatU Stat(uint64_t ino) {
    FsReply r = Run(Tstat{0}, ino);
    if (auto* u = std::get_if<RstatU>(&r.msg)) return u->stat;
    REQUIRE(std::holds_alternative<Rstat>(r.msg));
    StatU st;
    static_cast<p9::Stat&>(st) = std::get<Rstat>(r.msg).stat;
    return st;
  }
  FsReply Wstat(uint64_t ino, const StatU& st) { return Run(TwstatU{0, st}, ino); }
};

}  // namespace

TEST_CASE("Tcreate: 9P2000 limits permissions by the directory's, .u takes them as given") {
  Fs p(k9P2000);
  p.s->SetAttr(kRootIno, [] {
    store::SetAttrRequest r;
    r.set_mode = true;
    r.mode = S_IFDIR | 0750;
    return r;
  }());
  uint64_t f = p.Create("f", 0666);
  CHECK((p.Attr(f).mode & 07777) == 0640);  // 0666 & (~0666 | 0750)
  uint64_t d = p.Create("d", kDmDir | 0777);
  CHECK(p.Attr(d).mode == (S_IFDIR | 0750));
  CHECK(p.Attr(f).uid == 1000);
  CHECK(p.Attr(f).gid == p.Attr(kRootIno).gid);  // the directory's group
  // .u bits mean nothing in 9P2000: a plain file.
  uint64_t notlink = p.Create("nl", kDmSymlink | 0644, "target");
  CHECK(S_ISREG(p.Attr(notlink).mode));

  Fs u(k9P2000u);
  CHECK((u.Attr(u.Create("f", 0666)).mode & 07777) == 0666);
  uint64_t l = u.Create("ln", kDmSymlink | 0777, "../somewhere");
  CHECK(S_ISLNK(u.Attr(l).mode));
  CHECK(*u.s->ReadLink(l) == "../somewhere");
  uint64_t c = u.Create("null", kDmDevice | 0666, "c 1 3");
  CHECK(S_ISCHR(u.Attr(c).mode));
  CHECK(u.Attr(c).rdev == makedev(1, 3));
  CHECK(S_ISFIFO(u.Attr(u.Create("fifo", kDmNamedPipe | 0600)).mode));
  CHECK(S_ISSOCK(u.Attr(u.Create("sock", kDmSocket | 0600)).mode));
  CHECK((u.Attr(u.Create("suid", kDmSetuid | 0755)).mode & 07777) == 04755);
  u.s->Ref(kRootIno);
  CHECK(u.Err(u.Run(TcreateU{0, "bad", kDmDevice | 0600, kORead, "x 1 2"}, kRootIno)) == EINVAL);
  u.s->Ref(kRootIno);
  CHECK(u.Err(u.Run(TcreateU{0, "f", 0600, kORead, ""}, kRootIno)) == EEXIST);
  // DMLINK: the session resolved the extension's fid to ino2.
  uint64_t target = u.Create("target", 0644);
  u.s->Ref(kRootIno);
  FsReply r = u.Run(TcreateU{0, "hard", kDmLink, kORead, "7\n"}, kRootIno, target);
  REQUIRE(std::holds_alternative<Rcreate>(r.msg));
  CHECK(std::get<Rcreate>(r.msg).qid.path == target);
  CHECK(u.Attr(target).nlink == 2);
}

TEST_CASE("Tstat: numeric owners as strings, .u's extension and numbers") {
  Fs u(k9P2000u);
  uint64_t f = u.Create("file", 0640);
  REQUIRE(u.s->Write(f, 0, "hello").ok());
  StatU st = u.Stat(f);
  CHECK(st.name == "file");
  CHECK(st.mode == 0640);
  CHECK(st.length == 5);
  CHECK(st.uid == "1000");
  CHECK(st.muid == "1000");
  CHECK(st.gid == std::to_string(u.Attr(f).gid));
  CHECK(st.n_uid == 1000);
  CHECK(st.qid.path == f);
  CHECK(st.extension.empty());
  CHECK(u.Stat(kRootIno).name == "/");
  CHECK(u.Stat(kRootIno).mode == (kDmDir | (u.Attr(kRootIno).mode & 0777)));
  CHECK(u.Stat(kRootIno).length == 0);
  uint64_t l = u.Create("ln", kDmSymlink | 0777, "dest");
  CHECK(u.Stat(l).extension == "dest");
  CHECK((u.Stat(l).mode & kDmSymlink) != 0);
  CHECK(u.Stat(l).qid.type == kQtSymlink);
  CHECK(u.Stat(u.Create("blk", kDmDevice | 0600, "b 8 1")).extension == "b 8 1");
  // 9P2000 sees the same files without the .u parts.
  Fs p(k9P2000);
  uint64_t pl = p.s->Create(kRootIno, "ln", S_IFLNK | 0777, 5, 6, 0, "dest")->ino;
  StatU ps = p.Stat(pl);
  CHECK(ps.mode == 0777);
  CHECK(ps.qid.type == kQtFile);
  CHECK(ps.uid == "5");
  CHECK(ps.gid == "6");
}

TEST_CASE("Twstat: don't-touch fields change nothing; each field changes only itself") {
  for (Dialect d : {k9P2000, k9P2000u}) {
    INFO("dialect " << int(d));
    Fs fs(d);
    uint64_t f = fs.Create("f", 0644);
    REQUIRE(fs.s->Write(f, 0, "0123456789").ok());
    store::Attr before = fs.Attr(f);
    // All don't-touch: a sync, nothing changes (the version neither).
    REQUIRE(std::holds_alternative<Rwstat>(fs.Wstat(f, DontTouchStat()).msg));
    store::Attr after = fs.Attr(f);
    CHECK(after.mode == before.mode);
    CHECK(after.size == before.size);
    CHECK(after.mtime_ns == before.mtime_ns);
    CHECK(after.uid == before.uid);
    CHECK(after.version == before.version);
    // Fields that cannot change are ignored, whatever they hold.
    StatU fixed = DontTouchStat();
    fixed.type = 3;
    fixed.dev = 4;
    fixed.qid = Qid{0, 1, 2};
    fixed.muid = "42";
    fixed.mode = 0600;
    REQUIRE(std::holds_alternative<Rwstat>(fs.Wstat(f, fixed).msg));
    CHECK(fs.Attr(f).mode == (S_IFREG | 0600));
    CHECK(fs.Attr(f).size == 10);
    CHECK(fs.Attr(f).mtime_ns == before.mtime_ns);
    StatU len = DontTouchStat();
    len.length = 4;
    REQUIRE(std::holds_alternative<Rwstat>(fs.Wstat(f, len).msg));
    CHECK(fs.Attr(f).size == 4);
    CHECK(fs.Attr(f).mode == (S_IFREG | 0600));
    StatU mt = DontTouchStat();
    mt.mtime = 981173106;
    REQUIRE(std::holds_alternative<Rwstat>(fs.Wstat(f, mt).msg));
    CHECK(fs.Attr(f).mtime_ns == int64_t(981173106) * 1000000000);
    CHECK(fs.Attr(f).atime_ns == before.atime_ns);
    StatU owner = DontTouchStat();
    owner.uid = "77";
    owner.gid = "88";
    REQUIRE(std::holds_alternative<Rwstat>(fs.Wstat(f, owner).msg));
    CHECK(fs.Attr(f).uid == 77);
    CHECK(fs.Attr(f).gid == 88);
    // All or nothing: a bad owner string fails the whole request.
    StatU bad = DontTouchStat();
    bad.mode = 0444;
    bad.length = 0;
    bad.uid = "glenda";
    CHECK(fs.Err(fs.Wstat(f, bad)) == EINVAL);
    CHECK(fs.Attr(f).mode == (S_IFREG | 0600));
    CHECK(fs.Attr(f).size == 4);
    // A file does not become a directory; a directory's length stays.
    StatU dir = DontTouchStat();
    dir.mode = kDmDir | 0755;
    CHECK(fs.Err(fs.Wstat(f, dir)) == EINVAL);
    StatU dlen = DontTouchStat();
    dlen.length = 5;
    CHECK(fs.Err(fs.Wstat(kRootIno, dlen)) == EISDIR);
    dlen.length = 0;
    CHECK(std::holds_alternative<Rwstat>(fs.Wstat(kRootIno, dlen).msg));
  }
}

TEST_CASE("Twstat: .u numeric ids win over strings; set-id bits only in .u") {
  Fs u(k9P2000u);
  uint64_t f = u.Create("f", 0644);
  StatU st = DontTouchStat();
  st.n_uid = 5;
  st.uid = "6";
  st.n_gid = 7;
  st.mode = kDmSetgid | 0755;
  REQUIRE(std::holds_alternative<Rwstat>(u.Wstat(f, st).msg));
  CHECK(u.Attr(f).uid == 5);
  CHECK(u.Attr(f).gid == 7);
  CHECK((u.Attr(f).mode & 07777) == 02755);
  // 9P2000 cannot express set-id bits: a chmod keeps the ones there are.
  Fs p(k9P2000);
  uint64_t g = p.s->Create(kRootIno, "g", S_IFREG | 04755, 1, 1)->ino;
  StatU m = DontTouchStat();
  m.mode = 0700;
  REQUIRE(std::holds_alternative<Rwstat>(p.Wstat(g, m).msg));
  CHECK((p.Attr(g).mode & 07777) == 04700);
  // n_uid means nothing in 9P2000 (the session sends ~0 there anyway).
}

TEST_CASE("Twstat name: a rename within the directory; 9P2000 never replaces") {
  Fs p(k9P2000);
  uint64_t a = p.Create("a", 0644);
  p.Create("b", 0644);
  StatU st = DontTouchStat();
  st.name = "b";
  CHECK(p.Err(p.Wstat(a, st)) == EEXIST);
  st.name = "c";
  st.mode = 0600;
  REQUIRE(std::holds_alternative<Rwstat>(p.Wstat(a, st).msg));
  CHECK(p.s->Lookup(kRootIno, "c")->ino == a);
  CHECK(p.s->Lookup(kRootIno, "a").status().err() == ENOENT);
  CHECK((p.Attr(a).mode & 0777) == 0600);
  st.name = "c";  // its own name: nothing to do
  CHECK(std::holds_alternative<Rwstat>(p.Wstat(a, st).msg));
  st.name = "x/y";
  CHECK(p.Err(p.Wstat(a, st)) == EINVAL);
  CHECK(p.s->Lookup(kRootIno, "c")->ino == a);
  // .u (Unix clients' rename(2)) replaces.
  Fs u(k9P2000u);
  uint64_t x = u.Create("x", 0644);
  uint64_t y = u.Create("y", 0644);
  StatU r = DontTouchStat();
  r.name = "y";
  REQUIRE(std::holds_alternative<Rwstat>(u.Wstat(x, r).msg));
  CHECK(u.s->Lookup(kRootIno, "y")->ino == x);
  (void)y;
  // A rename and a change that fails: the rename is undone.
  StatU both = DontTouchStat();
  both.name = "z";
  both.gid = "not-a-number";
  CHECK(u.Err(u.Wstat(x, both)) == EINVAL);
  CHECK(u.s->Lookup(kRootIno, "y")->ino == x);
}

TEST_CASE("directory reads: whole stat records, no . or .., continued by cookie") {
  for (Dialect d : {k9P2000, k9P2000u}) {
    INFO("dialect " << int(d));
    Fs fs(d);
    std::set<std::string> want;
    for (int i = 0; i < 60; i++) {
      std::string name = "entry-" + std::to_string(i);
      fs.Create(name, 0644);
      want.insert(name);
    }
    std::set<std::string> got;
    uint64_t cookie = 0;
    int pages = 0;
    for (;;) {
      FsRequest req{Tread{0, 0, 400}, kRootIno};
      req.dialect = d;
      req.dir_cookie = cookie;
      FsReply r = StoreFileSystem::Execute(*fs.s, req);
      REQUIRE(std::holds_alternative<Rread>(r.msg));
      const std::string& b = std::get<Rread>(r.msg).data.bytes;
      REQUIRE(b.size() <= 400);
      if (b.empty()) break;
      pages++;
      WireReader rd(reinterpret_cast<const uint8_t*>(b.data()), b.size());
      while (rd.remaining()) {
        StatU st;
        bool ok = d == k9P2000u ? DecodeStat(rd, st) : DecodeStat(rd, static_cast<Stat&>(st));
        REQUIRE(ok);
        CHECK(st.name != ".");
        CHECK(st.name != "..");
        CHECK(got.insert(st.name).second);
        CHECK(st.uid == "1000");
      }
      cookie = r.next_cookie;
    }
    CHECK(got == want);
    CHECK(pages > 5);
    // Not even one record fits: an empty read (the Linux client fills its
    // buffer with reads until one is empty, then goes on from its offset).
    FsRequest tiny{Tread{0, 0, 20}, kRootIno};
    tiny.dialect = d;
    tiny.dir_cookie = 0;
    FsReply t = StoreFileSystem::Execute(*fs.s, tiny);
    REQUIRE(std::holds_alternative<Rread>(t.msg));
    CHECK(std::get<Rread>(t.msg).data.bytes.empty());
  }
}

TEST_CASE("Topen: OTRUNC empties a file opened for writing, never one opened to read") {
  Fs fs(k9P2000);
  uint64_t f = fs.Create("f", 0644);
  REQUIRE(fs.s->Write(f, 0, "data").ok());
  REQUIRE(std::holds_alternative<Ropen>(fs.Run(Topen{0, kORead | kOTrunc}, f).msg));
  CHECK(fs.Attr(f).size == 4);
  REQUIRE(std::holds_alternative<Ropen>(fs.Run(Topen{0, kOWrite | kOTrunc}, f).msg));
  CHECK(fs.Attr(f).size == 0);
  CHECK(fs.Err(fs.Run(Topen{0, kOWrite}, kRootIno)) == EISDIR);
  CHECK(std::get<Ropen>(fs.Run(Topen{0, kORead}, kRootIno).msg).qid.type == kQtDir);
}
