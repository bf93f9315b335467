// Round trip of every message type of every dialect, the dialect picking
// between layouts that share a type number, and rejection of truncated,
// padded and garbage frames.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <set>

#include "9p/codec.h"
#include "9p/wire.h"

using namespace muscle::p9;

namespace {

// The lowest dialect a message belongs to, to decode it in.
Dialect DialectFor(const Message& m) {
  uint8_t d = DialectsOf(m);
  return Dialect(d & -d);
}

Decoded DecodeIn(const std::string& frame, Dialect d) {
  return Decode(reinterpret_cast<const uint8_t*>(frame.data()), frame.size(), d);
}

StatU SampleStat() {
  StatU st;
  st.type = 1;
  st.dev = 2;
  st.qid = Qid{kQtSymlink, 3, 4};
  st.mode = kDmSymlink | 0777;
  st.atime = 1000;
  st.mtime = 2000;
  st.length = 6;
  st.name = "ln";
  st.uid = "1000";
  st.gid = "100";
  st.muid = "1000";
  st.extension = "target";
  st.n_uid = 1000;
  st.n_gid = 100;
  st.n_muid = 1000;
  return st;
}

// One filled-in example of every message type.
std::vector<Message> Examples() {
  Qid q{kQtDir, 7, 0x1122334455667788ULL};
  Rgetattr ga;
  ga.valid = kGetattrAll;
  ga.qid = q;
  ga.mode = 040755;
  ga.size = 1ULL << 40;
  ga.mtime_nsec = 999999999;
  ga.data_version = 3;
  Tsetattr sa;
  sa.fid = 4;
  sa.valid = kSetMode | kSetSize;
  sa.size = 12345;
  return {
      Rlerror{ENOENT}, Tstatfs{1}, Rstatfs{0x01021997, 4096, 10, 9, 8, 7, 6, 5, 255},
      Tlopen{2, 0102}, Rlopen{q, 8192}, Tlcreate{3, "new file", 0101, 0644, 100},
      Rlcreate{q, 0}, Tsymlink{3, "ln", "../target", 100}, Rsymlink{q},
      Tmknod{3, "fifo", 010644, 1, 2, 100}, Rmknod{q}, Trename{1, 2, "x"}, Rrename{},
      Treadlink{5}, Rreadlink{"/abs/path"}, Tgetattr{1, kGetattrAll}, ga, sa,
      Rsetattr{}, Txattrwalk{1, 2, "user.x"}, Rxattrwalk{42},
      Txattrcreate{1, "user.y", 10, 1}, Rxattrcreate{}, Treaddir{1, 99, 8192},
      Rreaddir{Data{std::string("\x01\x02\x03", 3)}}, Tfsync{1, 1}, Rfsync{},
      Tlock{1, kLockWrite, 0, 0, 100, 1234, "host"}, Rlock{kLockBlocked},
      Tgetlock{1, kLockRead, 5, 6, 7, "client"}, Rgetlock{kLockWrite, 1, 2, 3, "c"},
      Tlink{1, 2, "hard"}, Rlink{}, Tmkdir{1, "dir", 0755, 100}, Rmkdir{q},
      Trenameat{1, "a", 2, "b"}, Rrenameat{}, Tunlinkat{1, "gone", 0x200}, Runlinkat{},
      Trebind{1, 2, 0x1234567890}, Rrebind{q}, Tonce{0xfedcba9876543210ULL, Data{"frame"}},
      Tversion{524288, "9P2000.L"}, Rversion{524288, "9P2000.L"},
      Tauth{9, "user", "", kNoUid}, Rauth{q}, Tattach{0, kNoFid, "nobody", "/", kNoUid},
      Rattach{q}, Tflush{17}, Rflush{},
      Twalk{0, 1, {"a", "b", "c"}}, Rwalk{{q, q}}, Tread{1, 1ULL << 33, 65536},
      Rread{Data{std::string(1000, 'x')}}, Twrite{1, 77, Data{"hello"}}, Rwrite{5},
      Tclunk{1}, Rclunk{}, Tremove{1}, Rremove{},
      // 9P2000 and 9P2000.u
      Rerror{"No such file or directory"}, RerrorU{"Permission denied", EACCES},
      Tauth2000{5, "glenda", ""}, Tattach2000{0, kNoFid, "glenda", "/usr"},
      Topen{1, kORdwr | kOTrunc}, Ropen{q, 8192}, Tcreate{1, "f", 0644, kOWrite | kORclose},
      TcreateU{1, "ln", kDmSymlink | 0777, kORead, "../target"}, Rcreate{q, 0}, Tstat{1},
      Rstat{static_cast<Stat>(SampleStat())}, RstatU{SampleStat()},
      Twstat{1, static_cast<Stat>(DontTouchStat())}, TwstatU{1, SampleStat()}, Rwstat{},
  };
}

}  // namespace

TEST_CASE("every message type survives encode/decode") {
  auto all = Examples();
  REQUIRE(all.size() == std::variant_size_v<Message>);
  std::set<size_t> seen;
  for (const Message& m : all) {
    seen.insert(m.index());
    std::string frame;
    Encode(42, m, frame);
    Decoded d = DecodeIn(frame, DialectFor(m));
    INFO(NameOf(m) << " index " << m.index());
    REQUIRE(d.status == DecodeStatus::kOk);
    CHECK(d.tag == 42);
    CHECK(d.type == TypeOf(m));
    CHECK(d.msg.index() == m.index());
    std::string again;
    Encode(42, d.msg, again);
    CHECK(again == frame);
    CHECK(!Trace(42, m).empty());
    // Every dialect the message belongs to decodes it the same way.
    for (Dialect other : {k9P2000, k9P2000u, k9P2000L}) {
      if (!(DialectsOf(m) & other)) continue;
      Decoded o = DecodeIn(frame, other);
      REQUIRE(o.status == DecodeStatus::kOk);
      CHECK(o.msg.index() == m.index());
    }
  }
  CHECK(seen.size() == std::variant_size_v<Message>);
}

TEST_CASE("the negotiated dialect picks the layout of a shared type number") {
  std::string attach;  // with n_uname: 9P2000.u and .L
  Encode(1, Tattach{0, kNoFid, "u", "a", 1000}, attach);
  CHECK(std::holds_alternative<Tattach>(DecodeIn(attach, k9P2000L).msg));
  CHECK(std::holds_alternative<Tattach>(DecodeIn(attach, k9P2000u).msg));
  CHECK(DecodeIn(attach, k9P2000).status == DecodeStatus::kMalformed);  // 4 bytes too many
  std::string plain;
  Encode(1, Tattach2000{0, kNoFid, "u", "a"}, plain);
  Decoded p = DecodeIn(plain, k9P2000);
  REQUIRE(p.status == DecodeStatus::kOk);
  CHECK(std::get<Tattach2000>(p.msg).aname == "a");
  CHECK(DecodeIn(plain, k9P2000u).status == DecodeStatus::kMalformed);  // n_uname missing
  std::string create;
  Encode(1, TcreateU{1, "x", 0644, kORead, "ext"}, create);
  CHECK(std::get<TcreateU>(DecodeIn(create, k9P2000u).msg).extension == "ext");
  CHECK(DecodeIn(create, k9P2000).status == DecodeStatus::kMalformed);
  CHECK(DecodeIn(create, k9P2000L).status == DecodeStatus::kUnknownType);
  // .L messages are unknown to the stat dialects, and theirs to .L.
  std::string lopen, open;
  Encode(1, Tlopen{1, 0}, lopen);
  Encode(1, Topen{1, kORead}, open);
  CHECK(DecodeIn(lopen, k9P2000).status == DecodeStatus::kUnknownType);
  CHECK(DecodeIn(lopen, k9P2000u).status == DecodeStatus::kUnknownType);
  CHECK(DecodeIn(open, k9P2000L).status == DecodeStatus::kUnknownType);
  // A .u stat is 9P2000's plus extension[s] n_uid[4] n_gid[4] n_muid[4].
  std::string rstat, rstatu;
  Encode(1, Rstat{static_cast<Stat>(SampleStat())}, rstat);
  Encode(1, RstatU{SampleStat()}, rstatu);
  CHECK(rstatu.size() == rstat.size() + 2 + 6 + 12);
  CHECK(DecodeIn(rstatu, k9P2000).status == DecodeStatus::kMalformed);
}

TEST_CASE("stat records: the wire layout of stat(5), two counts, and directory entries") {
  Stat st;
  st.qid = Qid{kQtDir, 7, 9};
  st.mode = kDmDir | 0755;
  st.name = "d";
  st.uid = st.gid = st.muid = "0";
  std::string frame;
  Encode(3, Rstat{st}, frame);
  // size[4] type[1] tag[2] n[2] then the record: size[2] type[2] dev[4]
  // qid[13] mode[4] atime[4] mtime[4] length[8] and four strings.
  size_t record = 2 + 2 + 4 + 13 + 4 + 4 + 4 + 8 + (2 + 1) * 4;
  REQUIRE(frame.size() == 7 + 2 + record);
  CHECK(uint8_t(frame[7]) == record);        // n: the whole record
  CHECK(uint8_t(frame[9]) == record - 2);    // size: what follows it
  CHECK(uint8_t(frame[9 + 2 + 2 + 4]) == kQtDir);
  // The two counts must agree.
  std::string bad = frame;
  bad[7] = char(record + 1);
  CHECK(DecodeIn(bad, k9P2000).status == DecodeStatus::kMalformed);
  bad = frame;
  bad[9] = char(record - 3);
  CHECK(DecodeIn(bad, k9P2000).status == DecodeStatus::kMalformed);
  // Directory reads carry records back to back, without n.
  std::string dir;
  EncodeStat(st, dir);
  EncodeStat(SampleStat(), dir);  // a .u one, to decode as .u below
  CHECK(dir.size() == record + StatSize(SampleStat()));
  WireReader r(reinterpret_cast<const uint8_t*>(dir.data()), dir.size());
  Stat a;
  StatU b;
  REQUIRE(DecodeStat(r, a));
  CHECK(a == st);
  REQUIRE(DecodeStat(r, b));
  CHECK(b == SampleStat());
  CHECK(r.remaining() == 0);
  // A record cut short fails the reader.
  WireReader cut(reinterpret_cast<const uint8_t*>(dir.data()), record - 1);
  CHECK(!DecodeStat(cut, a));
  CHECK(!cut.ok());
}

TEST_CASE("wire layout matches the 9P spec for Tversion") {
  std::string frame;
  Encode(kNoTag, Tversion{8192, "9P2000.L"}, frame);
  const std::string expect("\x15\x00\x00\x00\x64\xff\xff\x00\x20\x00\x00\x08\x00" "9P2000.L", 21);
  CHECK(frame == expect);
}

TEST_CASE("truncated frames are malformed, never read past the end") {
  for (const Message& m : Examples()) {
    std::string frame;
    Encode(1, m, frame);
    for (size_t cut = 0; cut < frame.size(); cut++) {
      // Keep the size field honest so only the body is short.
      std::string t = frame.substr(0, cut);
      if (t.size() >= 4) {
        uint32_t n = uint32_t(t.size());
        memcpy(t.data(), &n, 4);
      }
      Decoded d = DecodeIn(t, DialectFor(m));
      INFO(NameOf(m) << " cut at " << cut);
      CHECK(d.status != DecodeStatus::kOk);
    }
  }
}

TEST_CASE("trailing bytes, wrong size fields, bad counts are rejected") {
  std::string frame;
  Encode(1, Tclunk{3}, frame);
  std::string padded = frame + "xx";
  uint32_t n = uint32_t(padded.size());
  memcpy(padded.data(), &n, 4);
  CHECK(Decode(reinterpret_cast<const uint8_t*>(padded.data()), padded.size()).status ==
        DecodeStatus::kMalformed);
  // Size field disagreeing with the buffer.
  CHECK(Decode(reinterpret_cast<const uint8_t*>(frame.data()), frame.size() - 1).status ==
        DecodeStatus::kMalformed);
  // A walk with 17 names is refused by the decoder.
  std::string walk;
  Encode(1, Twalk{0, 1, std::vector<std::string>(17, "a")}, walk);
  CHECK(Decode(reinterpret_cast<const uint8_t*>(walk.data()), walk.size()).status ==
        DecodeStatus::kMalformed);
  // A string length larger than the frame.
  std::string bad;
  Encode(1, Tversion{8192, "9P2000.L"}, bad);
  bad[11] = '\x7f';
  CHECK(Decode(reinterpret_cast<const uint8_t*>(bad.data()), bad.size()).status ==
        DecodeStatus::kMalformed);
  // A Twrite whose count exceeds the frame.
  std::string w;
  Encode(1, Twrite{1, 0, Data{"abc"}}, w);
  w[19] = '\x10';
  CHECK(Decode(reinterpret_cast<const uint8_t*>(w.data()), w.size()).status ==
        DecodeStatus::kMalformed);
}

TEST_CASE("unknown message types, and types of other dialects, are reported as unknown") {
  for (uint8_t type : {0, 1, 100 + 12, 114, 124, 126, 200, 255}) {
    std::string frame("\x07\x00\x00\x00\x00\x01\x00", 7);
    frame[4] = char(type);
    Decoded d = Decode(reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
    CHECK(d.status == DecodeStatus::kUnknownType);
    CHECK(d.tag == 1);
  }
  for (uint8_t type : {0, 7, 12, 24, 40, 200, 255}) {
    std::string frame("\x07\x00\x00\x00\x00\x01\x00", 7);
    frame[4] = char(type);
    for (Dialect d : {k9P2000, k9P2000u}) CHECK(DecodeIn(frame, d).status == DecodeStatus::kUnknownType);
  }
}

TEST_CASE("random garbage never crashes the decoder; what it accepts is exactly one frame") {
  std::mt19937 rng(1234);
  const std::vector<Message> examples = Examples();
  int accepted = 0;
  for (int i = 0; i < 20000; i++) {
    size_t len = rng() % 64;
    std::string b(len, '\0');
    for (auto& c : b) c = char(rng());
    if (len >= 5) {
      b[4] = char(examples[rng() % examples.size()].index() ? TypeOf(examples[rng() % examples.size()]) : 8);
      uint32_t n = uint32_t(len);
      memcpy(b.data(), &n, 4);
    }
    for (Dialect dl : {k9P2000, k9P2000u, k9P2000L}) {
      Decoded d = Decode(reinterpret_cast<const uint8_t*>(b.data()), b.size(), dl);
      if (d.status != DecodeStatus::kOk) continue;
      // Accepted: every byte was a field (no trailing bytes, the size field
      // is the length), so encoding the message again gives the same frame.
      accepted++;
      std::string again;
      Encode(d.tag, d.msg, again);
      INFO("dialect " << int(dl) << ", " << NameOf(d.msg) << ", " << len << " bytes");
      CHECK(again == b);
    }
  }
  // Some garbage must reach the accepting path, or this proves nothing.
  CHECK(accepted > 100);
}
