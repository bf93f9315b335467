// The per-request rows (9p/ops.h) against the messages they describe:
// every fid a request names is in its row (or a rebinding fid would not
// make it wait), the rows that change the tree never go to a reader, and
// the binding rows find the inode their reply binds.
#include <fcntl.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <utility>

#include "9p/ops.h"

using namespace muscle::p9;

namespace {

template <class F, size_t... I>
void ForEachTypeImpl(F&& f, std::index_sequence<I...>) {
  (f(std::variant_alternative_t<I, Message>{}), ...);
}
// Calls f(T{}) for every alternative of Message.
template <class F>
void ForEachType(F&& f) {
  ForEachTypeImpl(f, std::make_index_sequence<std::variant_size_v<Message>>{});
}

// Gives every fid field of m (by its name in fields(): "fid", "dfid",
// "newfid", ...; not "afid", which names no file) its own number.
struct FidNumberer {
  std::set<uint32_t> numbers;
  uint32_t next = 100;
  template <class V>
  void operator()(const char* name, V& value) {
    std::string n = name;
    if constexpr (std::is_same_v<V, uint32_t>) {
      if (n.size() >= 3 && n.compare(n.size() - 3, 3, "fid") == 0 && n != "afid") {
        value = next++;
        numbers.insert(value);
      }
    }
  }
};

}  // namespace

TEST_CASE("every fid field of every request is named by its row") {
  int checked = 0;
  ForEachType([&](auto sample) {
    using T = decltype(sample);
    if constexpr (kIsRequest<T>) {
      if constexpr (Op<T>::kServed != Served::kNormalized) {
        T m{};
        FidNumberer n;
        m.fields(n);
        std::set<uint32_t> named;
        ForEachFid(Message{m}, [&](uint32_t fid) { named.insert(fid); });
        INFO("request type " << int(T::kType));
        CHECK(named == n.numbers);
        checked++;
      }
    }
  });
  CHECK(checked >= 30);  // every request of the three dialects that is dispatched
}

TEST_CASE("requests that change the tree are never answered by a reader") {
  ForEachType([&](auto sample) {
    using T = decltype(sample);
    if constexpr (kIsRequest<T>) {
      using R = Op<T>;
      INFO("request type " << int(T::kType));
      if (R::kServed == Served::kReader) CHECK(R::kChanges != Changes::kAlways);
      if (R::kRefs == Refs::kRebinds) CHECK(R::kServed != Served::kReader);
    }
  });
  // The rows that depend on their arguments: a reader only for the
  // arguments that do not change anything.
  FsRequest req;
  Tlopen trunc{1, O_WRONLY | O_TRUNC};
  CHECK(ChangesTree(Message{trunc}));
  CHECK_FALSE(Op<Tlopen>::ReaderMay(trunc, req));
  Tlopen ro{1, O_RDONLY};
  CHECK_FALSE(ChangesTree(Message{ro}));
  CHECK(Op<Tlopen>::ReaderMay(ro, req));
  CHECK(ChangesTree(Message{Topen{1, kOWrite}}));
  CHECK(ChangesTree(Message{Topen{1, kORclose}}));
  CHECK_FALSE(ChangesTree(Message{Topen{1, kORead}}));
  CHECK_FALSE(ChangesTree(Message{TwstatU{1, DontTouchStat()}}));
  TwstatU rename{1, DontTouchStat()};
  rename.stat.name = "new";
  CHECK(ChangesTree(Message{rename}));
  CHECK(ChangesTree(Message{Twrite{}}));
  CHECK(ChangesTree(Message{Tremove{}}));
  CHECK_FALSE(ChangesTree(Message{Tgetattr{}}));
}

TEST_CASE("binding rows find the inode their reply binds") {
  FsRequest req;
  req.ino = 5;
  Twalk walk{1, 2, {"a", "b"}};
  CHECK(Op<Twalk>::RefsOf(walk) == Refs::kBindsNew);
  CHECK(Op<Twalk>::BoundIno(walk, req, FsReply{Rwalk{{Qid{0, 0, 8}, Qid{0, 0, 9}}}}) == 9);
  CHECK(Op<Twalk>::BoundIno(walk, req, FsReply{Rwalk{{Qid{0, 0, 8}}}}) == 0);  // stopped short
  CHECK(Op<Twalk>::BoundIno(walk, req, FsReply{Rlerror{ENOENT}}) == 0);
  Twalk clone{1, 1, {}};
  CHECK(Op<Twalk>::RefsOf(clone) == Refs::kRebinds);
  CHECK(Op<Twalk>::BoundIno(clone, req, FsReply{Rwalk{}}) == 5);
  CHECK(Op<Tattach>::BoundIno(Tattach{}, req, FsReply{Rattach{Qid{0, 0, 1}}}) == 1);
  CHECK(Op<Tlcreate>::BoundIno(Tlcreate{}, req, FsReply{Rlcreate{Qid{0, 0, 7}, 0}}) == 7);
  CHECK(Op<TcreateU>::BoundIno(TcreateU{}, req, FsReply{Rcreate{Qid{0, 0, 6}, 0}}) == 6);
  CHECK(Op<Tclunk>::RefsOf(Tclunk{}) == Refs::kReleases);
  CHECK(Op<Tremove>::RefsOf(Tremove{}) == Refs::kReleases);
  CHECK(Op<Tgetattr>::RefsOf(Tgetattr{}) == Refs::kNone);
}

TEST_CASE("reply budgets: data replies by their count, the rest a few hundred bytes") {
  CHECK(ReplyBudget(Message{Tread{1, 0, 8192}}, 65536) == 8192 + kIoHeaderSize);
  CHECK(ReplyBudget(Message{Tread{1, 0, 1u << 30}}, 65536) == 65536 + kIoHeaderSize);
  CHECK(ReplyBudget(Message{Treaddir{1, 0, 4096}}, 65536) == 4096 + kIoHeaderSize);
  CHECK(ReplyBudget(Message{Tgetattr{}}, 65536) == 512);
}
