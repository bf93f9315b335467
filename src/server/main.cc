// musclefs: serve a content-addressed SQLite tree over 9P2000.L.
#include <malloc.h>
#include <sys/stat.h>

#include "common/file_lock.h"
#include <uv.h>

#include <csignal>
#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <unistd.h>

#include "common/fs_util.h"
#include "common/log.h"
#include "server/chunk_backend.h"
#include "server/config.h"
#include "server/config_check.h"
#include "server/server.h"
#include "store/store.h"

using namespace muscle;

namespace {

int Check(const server::Config& c) {
  struct stat st;
  if (c.server.store_path != ":memory:" && stat(c.server.store_path.c_str(), &st) != 0) {
    fprintf(stderr, "musclefs: no store at %s (pass --store FILE or --base DIR)\n",
            c.server.store_path.c_str());
    return 2;
  }
  auto chunks = server::OpenChunkBackend(c.server.chunks, c.server.store_path);
  if (!chunks.ok()) {
    fprintf(stderr, "musclefs: %s\n", chunks.status().ToString().c_str());
    return 2;
  }
  auto s = store::Store::Open(c.server.store_path, std::move(*chunks));
  if (!s.ok()) {
    fprintf(stderr, "musclefs: %s\n", s.status().ToString().c_str());
    return 2;
  }
  store::CheckReport r = (*s)->Check();
  auto h = (*s)->TreeHash();
  printf("store %s: %llu inodes, %llu extents, %llu chunks (%llu bytes)\n",
         c.server.store_path.c_str(), (unsigned long long)r.inodes,
         (unsigned long long)r.extents, (unsigned long long)r.chunks,
         (unsigned long long)r.chunk_bytes);
  printf("packs: %llu (%llu bytes, %llu not used by any live chunk)\n",
         (unsigned long long)r.packs, (unsigned long long)r.pack_bytes,
         (unsigned long long)r.unreferenced_bytes);
  printf("snapshots: %llu (%llu tree objects, every one re-hashed and decoded)\n",
         (unsigned long long)r.snapshots, (unsigned long long)r.objects);
  if (h.ok()) printf("root hash %s\n", store::HexOf(*h).c_str());
  for (const auto& p : r.problems) printf("PROBLEM: %s\n", p.c_str());
  printf("%s\n", r.ok() ? "ok" : "FAILED");
  return r.ok() ? 0 : 1;
}

// Opening a store migrates an older format in place (with log lines);
// upgrade does only that, gc then compacts every pack with dead records.
int Maintain(const server::Config& c) {
  struct stat st;
  if (stat(c.server.store_path.c_str(), &st) != 0) {
    fprintf(stderr, "musclefs: no store at %s (pass --store FILE or --base DIR)\n",
            c.server.store_path.c_str());
    return 2;
  }
  auto chunks = server::OpenChunkBackend(c.server.chunks, c.server.store_path);
  if (!chunks.ok()) {
    fprintf(stderr, "musclefs: %s\n", chunks.status().ToString().c_str());
    return 2;
  }
  auto s = store::Store::Open(c.server.store_path, std::move(*chunks));
  if (!s.ok()) {
    fprintf(stderr, "musclefs: %s\n", s.status().ToString().c_str());
    return 2;
  }
  if (c.command == "upgrade") {
    printf("store %s: format %d\n", c.server.store_path.c_str(), store::kStoreFormat);
    return 0;
  }
  auto r = (*s)->CollectGarbage(true);
  if (!r.ok()) {
    fprintf(stderr, "musclefs: gc: %s\n", r.status().ToString().c_str());
    return 1;
  }
  printf("store %s: %llu packs compacted, %llu bytes copied, %llu bytes freed\n",
         c.server.store_path.c_str(), (unsigned long long)r->packs_removed,
         (unsigned long long)r->bytes_copied, (unsigned long long)r->bytes_freed);
  return 0;
}

int CheckConfiguration(const server::Config& c) {
  server::ConfigReport r = server::CheckConfig(c);
  printf("musclefs: base %s, config %s/musclefs.conf\n", c.base.c_str(), c.base.c_str());
  for (const auto& n : r.notes) printf("musclefs: %s\n", n.c_str());
  for (const auto& p : r.problems) fprintf(stderr, "musclefs: ERROR: %s\n", p.c_str());
  if (!r.ok()) {
    fprintf(stderr, "musclefs: configuration FAILED (%zu problems)\n", r.problems.size());
    return 1;
  }
  printf("musclefs: configuration ok\n");
  return 0;
}

int Serve(const server::Config& c) {
  if (c.server.store_path != ":memory:") {
    std::string dir = c.server.store_path.substr(0, c.server.store_path.rfind('/'));
    // Create the base directory (and parents) the first time.
    if (!dir.empty() && dir != c.server.store_path) MakeDirs(dir, 0700);
  }
  // One server per base: the pid file is locked for the server's life and
  // tells `muscle keys` whom to signal.
  MakeDirs(c.base, 0700);
  auto pid_lock = FileLock::PidFile(c.base + "/musclefs.pid");
  if (!pid_lock.ok()) {
    fprintf(stderr, "musclefs: %s\n", pid_lock.status().message().c_str());
    return 1;
  }
  uv_loop_t* loop = uv_default_loop();
  server::Server srv(loop);
  Status s = srv.Start(c.server);
  if (!s.ok()) {
    fprintf(stderr, "musclefs: %s\n", s.ToString().c_str());
    return 1;
  }
  Log("serving store %s", c.server.store_path.c_str());
  for (const auto& e : srv.bound()) Log("listening on %s", e.text.c_str());
  for (const auto& w : server::ListenerWarnings(srv.bound())) Log("WARNING: %s", w.c_str());
  for (const auto& m : server::MountHints(srv.bound(), c.server.max_msize))
    Log("to mount: %s", m.c_str());
  struct SignalContext {
    server::Server* srv;
    uv_signal_t term, intr, hup;
    bool stopping = false;
  } ctx;
  ctx.srv = &srv;
  auto on_signal = [](uv_signal_t* h, int signum) {
    auto* ctx = static_cast<SignalContext*>(h->data);
    if (ctx->stopping) return;
    ctx->stopping = true;
    Log("caught %s: finishing requests in flight, committing", strsignal(signum));
    ctx->srv->Shutdown([ctx] {
      uv_close(reinterpret_cast<uv_handle_t*>(&ctx->term), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&ctx->intr), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&ctx->hup), nullptr);
    });
  };
  uv_signal_init(loop, &ctx.term);
  uv_signal_init(loop, &ctx.intr);
  ctx.term.data = ctx.intr.data = &ctx;
  uv_signal_start(&ctx.term, on_signal, SIGTERM);
  uv_signal_start(&ctx.intr, on_signal, SIGINT);
  uv_signal_init(loop, &ctx.hup);
  ctx.hup.data = &ctx;
  uv_signal_start(
      &ctx.hup,
      [](uv_signal_t* h, int) { static_cast<SignalContext*>(h->data)->srv->ReloadKeys(); },
      SIGHUP);
  signal(SIGPIPE, SIG_IGN);
  uv_run(loop, UV_RUN_DEFAULT);
  Log("stopped");
  return 0;
}

}  // namespace

// glibc returns freed memory at the top of the heap to the kernel (brk) on
// almost every free of a large block, and maps message-sized buffers
// (512 KiB-1 MiB) one by one; each unmap interrupts the other cores to
// flush their TLBs. Keep up to 32 MiB of free heap and allocate buffers up
// to 4 MiB from it. Measured here: getattr and smallfiles with 8
// connections +15-50% (TLS and unix), at the cost of that much retained
// memory after a burst.
static void TuneMalloc() {
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  mallopt(M_TOP_PAD, 4 << 20);
}

int main(int argc, char** argv) {
  TuneMalloc();
  umask(077);  // the store, its WAL, the socket and the pid file are the owner's alone
  std::vector<std::string> args(argv + 1, argv + argc);
  auto c = server::ParseConfig(args);
  bool checking = std::find(args.begin(), args.end(), "--check-config") != args.end();
  if (!c.ok() && checking) {
    fprintf(stderr, "musclefs: %s\nmusclefs: configuration FAILED\n", c.status().message().c_str());
    return 1;
  }
  if (!c.ok()) {
    fprintf(stderr, "musclefs: %s\n", c.status().message().c_str());
    return 2;
  }
  if (c->command == "help") {
    fputs(server::Usage(), stdout);
    return args.empty() ? 2 : 0;
  }
  SetTraceEnabled(c->trace);
  if (c->check_config) return CheckConfiguration(*c);
  if (c->command == "check") return Check(*c);
  if (c->command == "gc" || c->command == "upgrade") return Maintain(*c);
  return Serve(*c);
}
