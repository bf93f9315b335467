#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <tuple>

#include "9p/codec.h"
#include "9p/restore_book.h"

using namespace muscle::p9;

namespace {

std::string F(uint16_t tag, const Message& m) {
  std::string out;
  Encode(tag, m, out);
  return out;
}

Qid Q(uint64_t path) {
  Qid q;
  q.path = path;
  return q;
}

// One frame the book produced: its tag, its type and, unless it is a
// Tonce, the decoded message; for a Tonce, its op and inner frame.
struct Out {
  uint16_t tag = 0;
  uint8_t type = 0;
  Message msg;
  uint64_t op = 0;
  std::string inner;
};

std::vector<Out> Split(const std::string& bytes) {
  std::vector<Out> outs;
  FrameSplitter s(kMaxMsize);
  s.Append(bytes.data(), bytes.size());
  for (auto f = s.Next(); !f.empty(); f = s.Next()) {
    Out o;
    o.type = uint8_t(f[4]);
    memcpy(&o.tag, f.data() + 5, 2);
    if (o.type == 152) {
      memcpy(&o.op, f.data() + 7, 8);
      o.inner = std::string(f.substr(19));
    } else {
      Decoded d = Decode(reinterpret_cast<const uint8_t*>(f.data()), f.size());
      REQUIRE(d.status == DecodeStatus::kOk);
      o.msg = std::move(d.msg);
    }
    outs.push_back(std::move(o));
  }
  REQUIRE(s.buffered() == 0);
  return outs;
}

// A client and a server around a book.
struct Rig {
  RestoreBook book{1000};
  std::string to_server, to_client;

  void Client(uint16_t tag, const Message& m) { book.FromClient(F(tag, m), to_server, to_client); }
  void Server(uint16_t tag, const Message& m) { book.FromServer(F(tag, m), to_server, to_client); }
  std::vector<Out> TakeServer() { return Split(std::exchange(to_server, {})); }
  std::vector<Out> TakeClient() { return Split(std::exchange(to_client, {})); }
  // A request and its reply, passed through.
  void Call(uint16_t tag, const Message& t, const Message& r) {
    Client(tag, t);
    TakeServer();
    Server(tag, r);
    REQUIRE(TakeClient().size() == 1);
  }
  void Negotiate() {
    book.set_once(true);
    Call(kNoTag, Tversion{65536, "9P2000.L"}, Rversion{65536, "9P2000.L"});
    Call(1, Tattach{0, kNoFid, "u", "", 1000}, Rattach{Q(1)});
  }
  // Answers every request of the book's own with success (Rversion for
  // the Tversion), returns them.
  std::vector<Out> AnswerOwn(std::vector<Out> sent) {
    for (auto& o : sent) {
      if (std::holds_alternative<Tversion>(o.msg)) Server(o.tag, Rversion{65536, "9P2000.L"});
      else if (std::holds_alternative<Tattach>(o.msg)) Server(o.tag, Rattach{Q(1)});
      else if (auto* r = std::get_if<Trebind>(&o.msg)) Server(o.tag, Rrebind{Q(r->path)});
      else if (std::holds_alternative<Tlopen>(o.msg)) Server(o.tag, Rlopen{});
      else if (std::holds_alternative<Tclunk>(o.msg)) Server(o.tag, Rclunk{});
    }
    return sent;
  }
};

template <class T>
const T& As(const Out& o) {
  REQUIRE(std::holds_alternative<T>(o.msg));
  return std::get<T>(o.msg);
}

}  // namespace

TEST_CASE("frame splitter: frames across reads, and a bad size stops it") {
  std::string a = F(1, Tclunk{5}), b = F(2, Tgetattr{6, 0x7ff});
  std::string both = a + b;
  FrameSplitter s(8192);
  s.Append(both.data(), 3);
  CHECK(s.Next().empty());
  s.Append(both.data() + 3, a.size());  // a, and 3 bytes of b
  CHECK(s.Next() == a);
  CHECK(s.Next().empty());
  s.Append(both.data() + 3 + a.size(), both.size() - 3 - a.size());
  CHECK(s.Next() == b);
  CHECK(s.buffered() == 0);
  std::string huge = F(3, Tclunk{1});
  uint32_t size = 9000;
  memcpy(huge.data(), &size, 4);
  s.Append(huge.data(), huge.size());
  CHECK(s.Next().empty());
  CHECK(s.bad());
}

TEST_CASE("restore book: fids bound again by inode, opens redone, waiting requests resent") {
  Rig r;
  r.Negotiate();
  CHECK(r.book.CanRestore());
  // fid 1: a file two levels down, opened for append; fid 2 a clone of the
  // root walked to a directory; fid 3 an xattr fid (not restorable).
  r.Call(2, Twalk{0, 1, {"a", "b"}}, Rwalk{{Q(2), Q(3)}});
  r.Call(3, Tlopen{1, 02 | 02000}, Rlopen{Q(3), 0});
  r.Call(4, Twalk{0, 2, {}}, Rwalk{{}});
  r.Call(5, Twalk{2, 2, {"x"}}, Rwalk{{Q(7)}});
  r.Call(6, Txattrwalk{1, 3, "user.a"}, Rxattrwalk{5});
  // A walk that stopped short binds nothing.
  r.Call(7, Twalk{0, 4, {"a", "nope"}}, Rwalk{{Q(2)}});
  CHECK(r.book.fids() == 4);

  // Waiting when the server goes: a read, and a mkdir (sent in a Tonce).
  r.Client(10, Tread{1, 0, 4096});
  r.Client(11, Tmkdir{2, "new", 0755, 0});
  auto sent = r.TakeServer();
  REQUIRE(sent.size() == 2);
  CHECK(sent[0].type == Tread::kType);
  REQUIRE(sent[1].type == 152);
  CHECK(sent[1].tag == 11);
  uint64_t op = sent[1].op;
  CHECK(sent[1].inner == F(11, Tmkdir{2, "new", 0755, 0}));

  r.book.Lost();
  r.Client(12, Tgetattr{1, 0x7ff});  // held: nothing goes out
  CHECK(r.to_server.empty());
  CHECK(r.book.held_bytes() > 0);

  r.book.Restore(r.to_server);
  auto v = r.TakeServer();
  REQUIRE(v.size() == 1);
  CHECK(As<Tversion>(v[0]).msize == 65536);
  r.Server(kNoTag, Rversion{65536, "9P2000.L"});
  // The attach; once answered, two rebinds from it; then the reopen (no
  // O_APPEND). Each step waits for the one before.
  auto attach = r.TakeServer();
  REQUIRE(attach.size() == 1);
  CHECK(As<Tattach>(attach[0]).fid == 0);
  CHECK(As<Tattach>(attach[0]).n_uname == 1000);
  r.AnswerOwn(attach);
  auto rebinds = r.TakeServer();
  REQUIRE(rebinds.size() == 2);
  std::map<uint32_t, uint64_t> rebound;
  for (auto& o : rebinds) {
    auto& rb = As<Trebind>(o);
    CHECK(rb.fid == 0);
    rebound[rb.newfid] = rb.path;
  }
  CHECK(rebound == std::map<uint32_t, uint64_t>{{1, 3}, {2, 7}});
  r.AnswerOwn({rebinds[0]});
  CHECK(r.to_server.empty());  // the open waits for every rebind
  r.AnswerOwn({rebinds[1]});
  auto opens = r.TakeServer();
  REQUIRE(opens.size() == 1);
  CHECK(As<Tlopen>(opens[0]).fid == 1);
  CHECK(As<Tlopen>(opens[0]).flags == 02);
  for (auto* step : {&attach, &rebinds, &opens})
    for (auto& o : *step) {  // the book's tags are not the client's
      CHECK(o.tag != 10);
      CHECK(o.tag != 11);
    }
  CHECK(r.to_client.empty());
  r.AnswerOwn(opens);
  // Then the waiting requests, in order, the mkdir under the same op,
  // then what was held.
  auto again = r.TakeServer();
  REQUIRE(again.size() == 3);
  CHECK(again[0].tag == 10);
  CHECK(again[1].tag == 11);
  CHECK(again[1].op == op);
  CHECK(again[2].tag == 12);
  CHECK(r.book.restored().fids == 3);
  CHECK(r.book.restored().opened == 1);
  CHECK(r.book.restored().lost == 1);
  CHECK(r.book.restored().resent == 2);
  CHECK_FALSE(r.book.restoring());
  // Their replies reach the client; the xattr fid is answered here.
  r.Server(10, Rread{"abc"});
  CHECK(r.TakeClient().size() == 1);
  r.Client(20, Tread{3, 0, 10});
  auto stale = r.TakeClient();
  REQUIRE(stale.size() == 1);
  CHECK(As<Rlerror>(stale[0]).ecode == ESTALE);
  // Its clunk would have set the attribute: it cannot have.
  r.Client(21, Tclunk{3});
  auto clunked = r.TakeClient();
  REQUIRE(clunked.size() == 1);
  CHECK(As<Rlerror>(clunked[0]).ecode == EIO);
  CHECK(r.to_server.empty());
}

TEST_CASE("restore book: a truncating open goes in a Tonce, a plain one does not") {
  Rig r;
  r.Negotiate();
  r.Call(2, Twalk{0, 1, {"f"}}, Rwalk{{Q(9)}});
  r.Call(3, Twalk{0, 2, {"f"}}, Rwalk{{Q(9)}});
  r.Client(4, Tlopen{1, 01 | 01000});
  r.Client(5, Tlopen{2, 02});
  r.Client(6, Twrite{2, 0, Data{"x"}});
  auto sent = r.TakeServer();
  REQUIRE(sent.size() == 3);
  CHECK(sent[0].type == 152);
  CHECK(sent[1].type == Tlopen::kType);
  CHECK(sent[2].type == Twrite::kType);
}

TEST_CASE("restore book: a client's Tversion forgets the requests before it; a flush of itself") {
  Rig r;
  r.Negotiate();
  r.Client(5, Tgetattr{0, 0x7ff});
  r.Client(6, Tflush{6});  // nonsense, but no harm
  r.Server(6, Rflush{});
  CHECK(r.TakeClient().size() == 1);
  CHECK(r.book.waiting() == 1);
  r.Call(kNoTag, Tversion{65536, "9P2000.L"}, Rversion{65536, "9P2000.L"});
  CHECK(r.book.waiting() == 0);
  CHECK(r.book.fids() == 0);
}

TEST_CASE("restore book: a fid whose inode is gone is lost, its waiting request answered ESTALE") {
  Rig r;
  r.Negotiate();
  r.Call(2, Twalk{0, 1, {"f"}}, Rwalk{{Q(9)}});
  r.Client(10, Tgetattr{1, 0x7ff});
  r.Client(11, Tgetattr{0, 0x7ff});
  r.TakeServer();
  r.book.Lost();
  r.book.Restore(r.to_server);
  r.TakeServer();
  r.Server(kNoTag, Rversion{65536, "9P2000.L"});
  r.AnswerOwn(r.TakeServer());  // the attach
  auto own = r.TakeServer();
  REQUIRE(own.size() == 1);
  r.Server(own[0].tag, Rlerror{ESTALE});
  auto again = r.TakeServer();
  REQUIRE(again.size() == 1);
  CHECK(again[0].tag == 11);
  auto answered = r.TakeClient();
  REQUIRE(answered.size() == 1);
  CHECK(answered[0].tag == 10);
  CHECK(As<Rlerror>(answered[0]).ecode == ESTALE);
}

TEST_CASE("restore book: fids not needed at once are bound on first use, from an anchor") {
  Rig r;
  r.Negotiate();
  r.Call(2, Twalk{0, 1, {"a"}}, Rwalk{{Q(2)}});
  r.Call(3, Twalk{0, 2, {"b"}}, Rwalk{{Q(3)}});
  r.Call(4, Twalk{0, 3, {"c"}}, Rwalk{{Q(4)}});
  r.Call(5, Twalk{0, 0, {"d"}}, Rwalk{{Q(5)}});  // no root fid left
  r.book.Lost();
  r.book.Restore(r.to_server);
  r.TakeServer();
  r.Server(kNoTag, Rversion{65536, "9P2000.L"});
  // Only the anchor: nothing is open, locked or waited for.
  auto own = r.TakeServer();
  REQUIRE(own.size() == 1);
  uint32_t anchor = As<Tattach>(own[0]).fid;
  CHECK(anchor > 3);
  r.Server(own[0].tag, Rattach{Q(1)});
  CHECK(r.to_server.empty());  // kept, not clunked
  CHECK_FALSE(r.book.restoring());
  CHECK(r.book.restored().deferred == 4);
  CHECK(r.book.unbound() == 4);

  // First use: a rebind, then the request right behind it.
  r.Client(10, Tgetattr{1, 0x7ff});
  auto sent = r.TakeServer();
  REQUIRE(sent.size() == 2);
  auto& rb = As<Trebind>(sent[0]);
  CHECK(rb.fid == anchor);
  CHECK(rb.newfid == 1);
  CHECK(rb.path == 2);
  CHECK(sent[0].tag != 10);
  CHECK(sent[1].tag == 10);
  r.Server(sent[0].tag, Rrebind{Q(2)});
  CHECK(r.to_client.empty());  // the book's own reply
  r.Server(10, Rgetattr{});
  CHECK(r.TakeClient().size() == 1);
  CHECK(r.book.unbound() == 3);
  r.Client(11, Tgetattr{1, 0x7ff});  // bound now: no rebind
  CHECK(r.TakeServer().size() == 1);

  // A clunk of a fid never used: answered here.
  r.Client(12, Tclunk{2});
  CHECK(r.to_server.empty());
  auto clunked = r.TakeClient();
  REQUIRE(clunked.size() == 1);
  CHECK(std::holds_alternative<Rclunk>(clunked[0].msg));
  CHECK(r.book.unbound() == 2);

  // A rebind that fails: the request behind it (EBADF from the server)
  // is answered ESTALE, and so is the next one, here.
  r.Client(13, Twalk{3, 6, {"x"}});
  sent = r.TakeServer();
  REQUIRE(sent.size() == 2);
  r.Server(sent[0].tag, Rlerror{ESTALE});
  r.Server(13, Rlerror{EBADF});
  auto stale = r.TakeClient();
  REQUIRE(stale.size() == 1);
  CHECK(stale[0].tag == 13);
  CHECK(As<Rlerror>(stale[0]).ecode == ESTALE);
  r.Client(14, Tgetattr{3, 0x7ff});
  CHECK(As<Rlerror>(r.TakeClient().at(0)).ecode == ESTALE);
  r.Client(15, Tclunk{3});
  CHECK(std::holds_alternative<Rclunk>(r.TakeClient().at(0).msg));
  CHECK(r.to_server.empty());
  CHECK(r.book.unbound() == 1);

  // The last one, on a tag the book would have taken next: the rebind
  // takes another; a client request on the rebind's tag waits for it.
  uint16_t next = sent[0].tag - 1;
  r.Client(next, Tgetattr{0, 0x7ff});
  sent = r.TakeServer();
  REQUIRE(sent.size() == 2);
  CHECK(As<Trebind>(sent[0]).newfid == 0);
  CHECK(sent[0].tag != next);
  CHECK(sent[1].tag == next);
  r.Client(sent[0].tag, Tstatfs{1});
  CHECK(r.to_server.empty());
  r.Server(sent[0].tag, Rrebind{Q(5)});
  // Then the anchor goes (no fid left to bind), and the waiting request.
  auto after = r.TakeServer();
  REQUIRE(after.size() == 2);
  CHECK(As<Tclunk>(after[0]).fid == anchor);
  CHECK(after[1].tag == sent[0].tag);
  CHECK(after[1].type == Tstatfs::kType);
  r.Server(after[0].tag, Rclunk{});
  CHECK(r.to_client.empty());
  CHECK(r.book.unbound() == 0);
}

TEST_CASE("restore book: lazy binding of two fids in one request, flushes, tags kept high") {
  Rig r;
  r.Negotiate();
  r.Call(2, Twalk{0, 1, {"a"}}, Rwalk{{Q(2)}});
  r.Call(3, Twalk{0, 2, {"b"}}, Rwalk{{Q(3)}});
  r.Call(4, Twalk{0, 3, {"c"}}, Rwalk{{Q(4)}});
  r.book.Lost();
  r.book.Restore(r.to_server);
  r.TakeServer();
  r.Server(kNoTag, Rversion{65536, "9P2000.L"});
  r.AnswerOwn(r.TakeServer());  // the root's attach and the anchor's
  CHECK(r.to_server.empty());
  REQUIRE(r.book.unbound() == 3);
  // A rename between two unbound directories: a rebind for each, then it.
  r.Client(10, Trenameat{1, "x", 2, "y"});
  auto sent = r.TakeServer();
  REQUIRE(sent.size() == 3);
  std::set<uint32_t> bound{As<Trebind>(sent[0]).newfid, As<Trebind>(sent[1]).newfid};
  CHECK(bound == std::set<uint32_t>{1, 2});
  CHECK(sent[2].tag == 10);
  for (int i = 0; i < 2; i++) CHECK(sent[i].tag >= RestoreBook::kLazyTagLow);
  // A client request on a tag the book still uses waits, and its flush is
  // answered here: it never reaches the server, nor is it answered twice.
  uint16_t busy = sent[0].tag;
  r.Client(busy, Tgetattr{3, 0x7ff});
  r.Client(11, Tflush{busy});
  CHECK(r.to_server.empty());
  auto flushed = r.TakeClient();
  REQUIRE(flushed.size() == 1);
  CHECK(flushed[0].tag == 11);
  CHECK(std::holds_alternative<Rflush>(flushed[0].msg));
  r.Server(sent[0].tag, Rrebind{Q(2)});
  r.Server(sent[1].tag, Rrebind{Q(3)});
  CHECK(r.to_server.empty());  // nothing waited any more
  r.Server(10, Rrenameat{});
  CHECK(r.TakeClient().size() == 1);
  CHECK(r.book.unbound() == 1);
}

TEST_CASE("restore book: the book's own tags stay high as they cycle") {
  Rig r;
  r.Negotiate();
  constexpr uint32_t n = 40000;  // more first uses than the range has tags
  for (uint32_t i = 0; i < n; i++) r.Call(2, Twalk{0, 100 + i, {"f"}}, Rwalk{{Q(50)}});
  r.book.Lost();
  r.book.Restore(r.to_server);
  r.TakeServer();
  r.Server(kNoTag, Rversion{65536, "9P2000.L"});
  r.AnswerOwn(r.TakeServer());
  REQUIRE(r.book.unbound() == n);
  std::set<uint16_t> seen;
  for (uint32_t i = 0; i < n; i++) {
    r.Client(7, Tgetattr{100 + i, 0x7ff});
    auto sent = r.TakeServer();
    REQUIRE(sent.size() >= 2);  // the last one's anchor clunk too
    REQUIRE(sent[0].tag >= RestoreBook::kLazyTagLow);
    REQUIRE(sent[0].tag != kNoTag);
    seen.insert(sent[0].tag);
    r.Server(sent[0].tag, Rrebind{Q(50)});
    r.TakeServer();
    r.Server(7, Rgetattr{});
    REQUIRE(r.TakeClient().size() == 1);
  }
  CHECK(seen.size() == size_t(kNoTag) - RestoreBook::kLazyTagLow);
  CHECK(r.book.unbound() == 0);
}

TEST_CASE("restore book: a lazy fid named by a request waiting at the next restart is bound then") {
  Rig r;
  r.Negotiate();
  r.Call(2, Twalk{0, 1, {"a"}}, Rwalk{{Q(2)}});
  r.Call(3, Twalk{0, 2, {"b"}}, Rwalk{{Q(3)}});
  r.book.Lost();
  r.book.Restore(r.to_server);
  r.TakeServer();
  r.Server(kNoTag, Rversion{65536, "9P2000.L"});
  r.AnswerOwn(r.TakeServer());  // the root's attach, the anchor's
  CHECK(r.book.unbound() == 2);
  // fid 1's first use is cut by another restart, before its rebind's reply.
  r.Client(10, Tgetattr{1, 0x7ff});
  CHECK(r.TakeServer().size() == 2);
  r.book.Lost();
  r.book.Restore(r.to_server);
  r.TakeServer();
  r.Server(kNoTag, Rversion{65536, "9P2000.L"});
  auto attaches = r.TakeServer();
  REQUIRE(attaches.size() == 2);
  r.AnswerOwn(attaches);
  // fid 1 at once (a request waits on it), fid 2 still lazily.
  auto rebinds = r.TakeServer();
  REQUIRE(rebinds.size() == 1);
  CHECK(As<Trebind>(rebinds[0]).newfid == 1);
  r.AnswerOwn(rebinds);
  auto again = r.TakeServer();
  REQUIRE(again.size() == 1);
  CHECK(again[0].tag == 10);
  CHECK(r.book.unbound() == 1);
  CHECK(r.book.restored().deferred == 1);
}

TEST_CASE("restore book: soft failure answers everything waiting, then new requests, until restored") {
  Rig r;
  r.Negotiate();
  r.Call(2, Twalk{0, 1, {"f"}}, Rwalk{{Q(9)}});
  r.Client(10, Tread{1, 0, 10});
  r.Client(11, Tflush{10});
  r.TakeServer();
  r.book.Lost();
  r.Client(12, Tclunk{1});  // held
  r.book.Fail(EIO, r.to_client);
  auto answered = r.TakeClient();
  REQUIRE(answered.size() == 3);
  CHECK(As<Rlerror>(answered[0]).ecode == EIO);
  CHECK(std::holds_alternative<Rflush>(answered[1].msg));
  CHECK(std::holds_alternative<Rclunk>(answered[2].msg));
  CHECK(r.book.fids() == 1);  // fid 1 clunked
  r.Client(13, Tgetattr{0, 0x7ff});
  auto now = r.TakeClient();
  REQUIRE(now.size() == 1);
  CHECK(As<Rlerror>(now[0]).ecode == EIO);
  CHECK(r.to_server.empty());
  // The server is back: the root is attached again and requests flow.
  r.book.Restore(r.to_server);
  r.AnswerOwn(r.TakeServer());
  auto own = r.AnswerOwn(r.TakeServer());
  REQUIRE(own.size() == 1);
  CHECK(As<Tattach>(own[0]).fid == 0);
  CHECK_FALSE(r.book.failing());
  r.Client(14, Tgetattr{0, 0x7ff});
  CHECK(r.TakeServer().size() == 1);
}

TEST_CASE("restore book: a flush waiting at the restart is answered, its request not resent") {
  Rig r;
  r.Negotiate();
  r.Client(10, Tmkdir{0, "d", 0755, 0});
  r.Client(11, Tflush{10});
  r.Client(12, Tgetattr{0, 0x7ff});
  r.TakeServer();
  r.book.Lost();
  r.book.Restore(r.to_server);
  r.AnswerOwn(r.TakeServer());
  r.AnswerOwn(r.TakeServer());
  auto again = r.TakeServer();
  REQUIRE(again.size() == 1);
  CHECK(again[0].tag == 12);
  auto answered = r.TakeClient();
  REQUIRE(answered.size() == 1);
  CHECK(answered[0].tag == 11);
  CHECK(std::holds_alternative<Rflush>(answered[0].msg));
}

TEST_CASE("restore book: no restore without operation ids or outside 9P2000.L") {
  Rig r;
  r.Call(kNoTag, Tversion{8192, "9P2000.u"}, Rversion{8192, "9P2000.u"});
  r.book.set_once(true);
  CHECK_FALSE(r.book.CanRestore());
  Rig plain;
  plain.Call(kNoTag, Tversion{8192, "9P2000.L"}, Rversion{8192, "9P2000.L"});
  CHECK_FALSE(plain.book.CanRestore());
  // Without Tonce, nothing is wrapped.
  plain.Client(5, Tmkdir{0, "d", 0755, 0});
  auto sent = plain.TakeServer();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].type == Tmkdir::kType);
}

TEST_CASE("restore book: held locks are reclaimed after the opens; one refused loses its file") {
  Rig r;
  r.Negotiate();
  r.book.set_locks(true);
  // fid 1 and fid 4: two files, open; fid 5 a second fid of file 1's inode.
  r.Call(2, Twalk{0, 1, {"a"}}, Rwalk{{Q(3)}});
  r.Call(3, Tlopen{1, 02}, Rlopen{Q(3), 0});
  r.Call(4, Twalk{0, 4, {"b"}}, Rwalk{{Q(4)}});
  r.Call(5, Tlopen{4, 02}, Rlopen{Q(4), 0});
  r.Call(6, Twalk{0, 5, {"a"}}, Rwalk{{Q(3)}});
  // Granted: a write lock on a's first 100 bytes, split by an unlock; a
  // read lock on all of b. Refused: one more on b (not held).
  r.Call(7, Tlock{1, kLockWrite, 0, 0, 100, 42, "h"}, Rlock{kLockSuccess});
  r.Call(8, Tlock{5, kLockUnlock, 0, 10, 10, 42, "h"}, Rlock{kLockSuccess});
  r.Call(9, Tlock{4, kLockRead, kLockFlagBlock, 0, 0, 43, "h"}, Rlock{kLockSuccess});
  r.Call(10, Tlock{4, kLockWrite, 0, 0, 0, 44, "h"}, Rlock{kLockBlocked});
  CHECK(r.book.locks() == 3);

  r.book.Lost();
  r.book.Restore(r.to_server);
  r.AnswerOwn(r.TakeServer());              // Tversion
  r.AnswerOwn(r.TakeServer());              // attach
  auto rebinds = r.AnswerOwn(r.TakeServer());
  CHECK(rebinds.size() == 3);
  auto opens = r.AnswerOwn(r.TakeServer());
  CHECK(opens.size() == 2);
  // Then the reclaims, through an open fid of each file.
  auto reclaims = r.TakeServer();
  REQUIRE(reclaims.size() == 3);
  std::vector<std::tuple<uint32_t, uint8_t, uint64_t, uint64_t, uint32_t>> got;
  for (auto& o : reclaims) {
    auto& l = As<Tlock>(o);
    CHECK(l.flags == kLockFlagReclaim);
    CHECK(l.client_id == "h");
    got.emplace_back(l.fid, l.type, l.start, l.length, l.proc_id);
  }
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::tuple<uint32_t, uint8_t, uint64_t, uint64_t, uint32_t>>{
                   {1, kLockWrite, 0, 10, 42}, {1, kLockWrite, 20, 80, 42}, {4, kLockRead, 0, 0, 43}});
  // b's is refused (the grace period was over): b's fid is lost, and
  // clunked on the server.
  for (auto& o : reclaims)
    r.Server(o.tag, Rlock{As<Tlock>(o).fid == 4 ? uint8_t(kLockError) : uint8_t(kLockSuccess)});
  auto unlock = r.TakeServer();
  REQUIRE(unlock.size() == 1);
  CHECK(As<Tlock>(unlock[0]).type == kLockUnlock);
  CHECK(As<Tlock>(unlock[0]).fid == 4);
  CHECK(As<Tlock>(unlock[0]).proc_id == 43);
  r.Server(unlock[0].tag, Rlock{kLockSuccess});
  auto clunk = r.AnswerOwn(r.TakeServer());
  REQUIRE(clunk.size() == 1);
  CHECK(As<Tclunk>(clunk[0]).fid == 4);
  CHECK_FALSE(r.book.restoring());
  CHECK(r.book.restored().locks == 2);
  CHECK(r.book.restored().locks_lost == 1);
  r.Client(20, Tread{4, 0, 10});
  auto stale = r.TakeClient();
  REQUIRE(stale.size() == 1);
  CHECK(As<Rlerror>(stale[0]).ecode == ESTALE);
  r.Client(21, Tread{1, 0, 10});  // a's still work
  CHECK(r.TakeServer().size() == 1);
  CHECK(r.to_client.empty());
  CHECK(r.book.locks() == 2);
}

TEST_CASE("restore book: a lock the server holds back in its grace period waits, and is asked again") {
  Rig r;
  r.Negotiate();
  r.Call(2, Twalk{0, 1, {"a"}}, Rwalk{{Q(3)}});
  r.Call(3, Tlopen{1, 02}, Rlopen{Q(3), 0});
  r.Client(4, Tlock{1, kLockWrite, kLockFlagBlock, 0, 0, 42, "h"});
  auto first = r.TakeServer();
  REQUIRE(first.size() == 1);
  r.Server(4, Rlock{kLockGrace});
  CHECK(r.to_client.empty());  // never GRACE to the kernel (ENOLCK)
  CHECK(r.book.has_graced());
  r.book.RetryGraced(r.to_server);
  auto again = r.TakeServer();
  REQUIRE(again.size() == 1);
  CHECK(again[0].tag == 4);
  CHECK(As<Tlock>(again[0]).type == kLockWrite);
  CHECK_FALSE(r.book.has_graced());
  r.Server(4, Rlock{kLockSuccess});
  auto granted = r.TakeClient();
  REQUIRE(granted.size() == 1);
  CHECK(As<Rlock>(granted[0]).status == kLockSuccess);
  CHECK(r.book.locks() == 1);
}

TEST_CASE("restore book: one lock of a file not reclaimed gives back the file's others") {
  Rig r;
  r.Negotiate();
  r.book.set_locks(true);
  r.Call(2, Twalk{0, 1, {"a"}}, Rwalk{{Q(3)}});
  r.Call(3, Tlopen{1, 02}, Rlopen{Q(3), 0});
  r.Call(4, Tlock{1, kLockWrite, 0, 0, 10, 42, "h"}, Rlock{kLockSuccess});
  r.Call(5, Tlock{1, kLockWrite, 0, 100, 10, 43, "h"}, Rlock{kLockSuccess});
  r.book.Lost();
  r.book.Restore(r.to_server);
  r.AnswerOwn(r.TakeServer());  // Tversion
  r.AnswerOwn(r.TakeServer());  // attach
  r.AnswerOwn(r.TakeServer());  // rebind
  r.AnswerOwn(r.TakeServer());  // reopen
  auto reclaims = r.TakeServer();
  REQUIRE(reclaims.size() == 2);
  // 42's is granted, 43's refused: 42's range is unlocked again and the
  // fid clunked on the server; the client's fid answers ESTALE.
  for (auto& o : reclaims)
    r.Server(o.tag, Rlock{As<Tlock>(o).proc_id == 42 ? uint8_t(kLockSuccess) : uint8_t(kLockBlocked)});
  auto unlocks = r.TakeServer();
  REQUIRE(unlocks.size() == 2);
  std::set<uint32_t> procs;
  for (auto& o : unlocks) {
    CHECK(As<Tlock>(o).type == kLockUnlock);
    CHECK(As<Tlock>(o).length == 0);
    procs.insert(As<Tlock>(o).proc_id);
    r.Server(o.tag, Rlock{kLockSuccess});
  }
  CHECK(procs == std::set<uint32_t>{42, 43});
  auto clunk = r.AnswerOwn(r.TakeServer());
  REQUIRE(clunk.size() == 1);
  CHECK(As<Tclunk>(clunk[0]).fid == 1);
  CHECK_FALSE(r.book.restoring());
  CHECK(r.book.locks() == 0);
  r.Client(20, Tlock{1, kLockUnlock, 0, 0, 0, 42, "h"});
  auto stale = r.TakeClient();
  REQUIRE(stale.size() == 1);
  CHECK(As<Rlerror>(stale[0]).ecode == ESTALE);
}

TEST_CASE("restore book: a failed reopen is clunked; of a lock's holder, its file's locks are lost") {
  Rig r;
  r.Negotiate();
  r.book.set_locks(true);
  // File a: fid 1 open, holding a lock, and fid 2 walked to it. File b:
  // fid 3 open, no lock.
  r.Call(2, Twalk{0, 1, {"a"}}, Rwalk{{Q(3)}});
  r.Call(3, Tlopen{1, 02}, Rlopen{Q(3), 0});
  r.Call(4, Twalk{0, 2, {"a"}}, Rwalk{{Q(3)}});
  r.Call(5, Twalk{0, 3, {"b"}}, Rwalk{{Q(4)}});
  r.Call(6, Tlopen{3, 02}, Rlopen{Q(4), 0});
  r.Call(7, Tlock{1, kLockWrite, 0, 0, 10, 42, "h"}, Rlock{kLockSuccess});
  r.book.Lost();
  r.book.Restore(r.to_server);
  r.AnswerOwn(r.TakeServer());  // Tversion
  r.AnswerOwn(r.TakeServer());  // attach
  CHECK(r.AnswerOwn(r.TakeServer()).size() == 3);  // rebinds
  auto opens = r.TakeServer();
  REQUIRE(opens.size() == 2);
  for (auto& o : opens) r.Server(o.tag, Rlerror{EACCES});
  // No reclaim (the holder's descriptor is gone, and the unlock its close
  // would send): a's range given back before a's fids are clunked; b's
  // fid clunked too.
  std::vector<std::string> steps;
  for (int round = 0; round < 5 && r.book.restoring(); round++) {
    for (auto& o : r.TakeServer()) {
      if (auto* l = std::get_if<Tlock>(&o.msg)) {
        CHECK(l->type == kLockUnlock);
        CHECK(l->proc_id == 42);
        CHECK(l->flags == 0);
        steps.push_back("unlock");
        r.Server(o.tag, Rlock{kLockSuccess});
      } else {
        steps.push_back("clunk " + std::to_string(As<Tclunk>(o).fid));
        r.Server(o.tag, Rclunk{});
      }
    }
  }
  std::sort(steps.begin(), steps.end());
  CHECK(steps == std::vector<std::string>{"clunk 1", "clunk 2", "clunk 3", "unlock"});
  CHECK_FALSE(r.book.restoring());
  CHECK(r.book.restored().locks == 0);
  CHECK(r.book.restored().locks_lost == 1);
  CHECK(r.book.locks() == 0);
  r.Client(20, Tgetattr{2, 0x7ff});  // a's other fid too
  auto stale = r.TakeClient();
  REQUIRE(stale.size() == 1);
  CHECK(As<Rlerror>(stale[0]).ecode == ESTALE);
}

TEST_CASE("restore book: a try-lock in a grace period is answered blocked; a flushed one is not sent again") {
  Rig r;
  r.Negotiate();
  r.Call(2, Twalk{0, 1, {"a"}}, Rwalk{{Q(3)}});
  r.Call(3, Tlopen{1, 02}, Rlopen{Q(3), 0});
  // Non-blocking: EAGAIN at once, as for a plain client.
  r.Client(4, Tlock{1, kLockWrite, 0, 0, 0, 42, "h"});
  r.TakeServer();
  r.Server(4, Rlock{kLockGrace});
  auto tried = r.TakeClient();
  REQUIRE(tried.size() == 1);
  CHECK(As<Rlock>(tried[0]).status == kLockBlocked);
  CHECK_FALSE(r.book.has_graced());
  // Blocking, then flushed (a signal); its tag reused for a read: the
  // retry must not send the read again.
  r.Client(5, Tlock{1, kLockWrite, kLockFlagBlock, 0, 0, 42, "h"});
  r.TakeServer();
  r.Server(5, Rlock{kLockGrace});
  CHECK(r.book.has_graced());
  // The flush is answered here: the lock is not on the server.
  r.Client(6, Tflush{5});
  CHECK(r.to_server.empty());
  auto flushed = r.TakeClient();
  REQUIRE(flushed.size() == 1);
  CHECK(flushed[0].type == Rflush::kType);
  CHECK_FALSE(r.book.has_graced());
  r.Client(5, Tread{1, 0, 10});
  CHECK(r.TakeServer().size() == 1);
  r.book.RetryGraced(r.to_server);
  CHECK(r.to_server.empty());
  // A client's own reclaim flag is refused: only the book reclaims.
  r.Client(7, Tlock{1, kLockWrite, kLockFlagReclaim, 0, 0, 42, "h"});
  CHECK(r.to_server.empty());
  auto refused = r.TakeClient();
  REQUIRE(refused.size() == 1);
  CHECK(As<Rlock>(refused[0]).status == kLockError);
}
