// libFuzzer target: a stream of 9P frames through a real session and the
// real store (in memory), answered synchronously. The input is a series of
// frames (each with its own size field); a Tversion and a Tattach go
// first so that the fuzzer starts inside a working session. Nothing may
// crash, every request is answered at most once (the session aborts
// otherwise), and the store passes its check afterwards.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "9p/codec.h"
#include "9p/session.h"
#include "server/attach_router.h"
#include "server/store_filesystem.h"
#include "store/store.h"

using namespace muscle;
using namespace muscle::p9;

namespace {

// The server's two trees, answered at once: the live store and its views,
// chosen as the server's AttachRouter chooses.
struct SyncFs : FileSystem {
  store::Store& s;
  store::SnapshotView& v;
  SyncFs(store::Store& st, store::SnapshotView& views) : s(st), v(views) {}
  store::Tree& For(const FsRequest& req) {
    return server::AttachRouter::ForViews(req) ? static_cast<store::Tree&>(v) : s;
  }
  void Submit(FsRequest req, Done done) override {
    done(server::StoreFileSystem::Execute(For(req), req));
  }
  void Unref(uint64_t ino) override {
    (void)(store::SnapshotView::Owns(ino) ? static_cast<store::Tree&>(v) : s).Unref(ino);
  }
};

store::Store& TheStore() {
  static std::unique_ptr<store::Store> s = [] {
    auto r = store::Store::Open(":memory:");
    if (!r.ok()) abort();
    return std::move(*r);
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  store::Store& st = TheStore();
  static store::SnapshotView views(st);
  SyncFs fs(st, views);
  LockTable locks;
  size_t replies = 0;
  auto session = std::make_shared<Session>(fs, locks, SessionOptions{65536, ENOENT, "fuzz"},
                                           [&](std::string) { replies++; }, [](const char*) {});
  std::string start;
  Encode(kNoTag, Tversion{65536, "9P2000.L"}, start);
  Encode(1, Tattach{0, kNoFid, "", "", 0}, start);
  // Frames one by one, as the transport delivers them; it closes the
  // connection on a size below the header or above msize.
  auto feed = [&](const uint8_t* p, size_t n) {
    size_t pos = 0;
    while (n - pos >= 4) {
      uint32_t len = uint32_t(p[pos]) | uint32_t(p[pos + 1]) << 8 | uint32_t(p[pos + 2]) << 16 |
                     uint32_t(p[pos + 3]) << 24;
      if (len < kHeaderSize || len > n - pos || len > session->max_frame()) return;
      session->OnFrame(p + pos, len);
      pos += len;
    }
  };
  feed(reinterpret_cast<const uint8_t*>(start.data()), start.size());
  feed(data, size);
  session->Shutdown();
  session.reset();
  static int runs = 0;
  if (++runs % 500 == 0) {
    auto r = st.Check();
    if (!r.ok()) abort();
  }
  return 0;
}
