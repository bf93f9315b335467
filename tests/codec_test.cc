// Round trip of every message type, and rejection of truncated, padded and
// garbage frames.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <set>

#include "9p/codec.h"

using namespace muscle::p9;

namespace {

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
      Tversion{524288, "9P2000.L"}, Rversion{524288, "9P2000.L"},
      Tauth{9, "user", "", kNoUid}, Rauth{q}, Tattach{0, kNoFid, "nobody", "/", kNoUid},
      Rattach{q}, Tflush{17}, Rflush{},
      Twalk{0, 1, {"a", "b", "c"}}, Rwalk{{q, q}}, Tread{1, 1ULL << 33, 65536},
      Rread{Data{std::string(1000, 'x')}}, Twrite{1, 77, Data{"hello"}}, Rwrite{5},
      Tclunk{1}, Rclunk{}, Tremove{1}, Rremove{},
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
    Decoded d = Decode(reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
    INFO(NameOf(m));
    REQUIRE(d.status == DecodeStatus::kOk);
    CHECK(d.tag == 42);
    CHECK(d.type == TypeOf(m));
    CHECK(d.msg.index() == m.index());
    std::string again;
    Encode(42, d.msg, again);
    CHECK(again == frame);
    CHECK(!Trace(42, m).empty());
  }
  CHECK(seen.size() == std::variant_size_v<Message>);
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
      Decoded d = Decode(reinterpret_cast<const uint8_t*>(t.data()), t.size());
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

TEST_CASE("unknown and legacy message types are reported as unknown") {
  for (uint8_t type : {0, 1, 100 + 12, 114, 124, 126, 200, 255}) {
    std::string frame("\x07\x00\x00\x00\x00\x01\x00", 7);
    frame[4] = char(type);
    Decoded d = Decode(reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
    CHECK(d.status == DecodeStatus::kUnknownType);
    CHECK(d.tag == 1);
  }
}

TEST_CASE("random garbage never crashes the decoder") {
  std::mt19937 rng(1234);
  for (int i = 0; i < 20000; i++) {
    size_t len = rng() % 64;
    std::string b(len, '\0');
    for (auto& c : b) c = char(rng());
    if (len >= 5) {
      b[4] = char(Examples()[rng() % Examples().size()].index() ? TypeOf(Examples()[rng() % Examples().size()]) : 8);
      uint32_t n = uint32_t(len);
      memcpy(b.data(), &n, 4);
    }
    Decoded d = Decode(reinterpret_cast<const uint8_t*>(b.data()), b.size());
    (void)d;
  }
  SUCCEED();
}
