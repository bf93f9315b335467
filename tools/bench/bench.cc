// muscle bench: a 9P2000.L load generator and client of the project's own.
//
// Connects over unix, tcp or TLS-PSK (directly or through any local relay
// or stunnel port), negotiates msize and runs named workloads with N
// concurrent connections, each on its own thread with a blocking client.
// Prints a table for people and, with --json, one JSON object per result.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "9p/client.h"
#include "auth/keys.h"
#include "bench/bench.h"
#include "tls/tls_channel.h"

namespace muscle::bench {

using namespace muscle::p9;
using Clock = std::chrono::steady_clock;

namespace {

const char* kUsage = R"(usage: muscle bench --target ADDR [options]
  --target ADDR      unix:PATH, tcp://HOST:PORT, or tls://HOST:PORT (TLS-PSK)
  --identity NAME --keys FILE   for tls:// targets
  --workload LIST    comma-separated: seqwrite,seqread,smallfiles,getattr,
                     readdir,connect,idle, getattr-busy (default all but idle
                     and getattr-busy). getattr-busy runs getattr on --conns
                     connections while one more writes --size bytes (as
                     seqwrite), and reports the getattr latency under that load
  --conns N          concurrent connections (default 1)
  --size BYTES       seqwrite/seqread total size (default 1073741824)
  --msize BYTES      requested msize (default 524288)
  --inflight K       requests in flight per connection for seq* (default 4)
  --seconds S        duration of timed workloads (default 5)
  --entries N        readdir directory size (default 10000)
  --idle K           connections held by idle (default 1000)
  --server-pid PID[,PID...]   the server's processes: idle measures the
                     first one's memory; seqwrite and seqread report the CPU
                     seconds all of them spent per GiB moved (user + system,
                     from /proc/PID/stat, the final Tfsync included)
  --dir NAME         working directory inside the tree (default bench)
  --aname PATH       attach name (default /; diod wants its export path)
  --label TEXT       name of this target in the output
  --json             one JSON object per result on stdout
  --quiet            no progress on stderr
)";

struct Options {
  std::string target, identity, keys, label, dir = "bench", aname = "/";
  std::vector<std::string> workloads;
  int conns = 1;
  uint64_t size = 1ull << 30;
  uint32_t msize = 512 * 1024;
  int inflight = 4;
  double seconds = 5;
  int entries = 10000;
  int idle = 1000;
  int server_pid = 0;               // the first of server_pids
  std::vector<int> server_pids;
  bool json = false, quiet = false;
};

struct Row {
  std::string workload;
  int conns = 0;
  std::string metric;
  double value = 0;
  double p50_us = -1, p99_us = -1;
  std::string note;
  double server_cpu_s_per_gib = -1;  // seq*: the server processes' CPU per GiB moved
};

// CPU seconds (user + system) the processes have used so far; -1 when one
// cannot be read.
double CpuSeconds(const std::vector<int>& pids) {
  double total = 0;
  for (int pid : pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t paren = stat.rfind(')');  // the command name may hold spaces
    if (paren == std::string::npos) return -1;
    std::istringstream fields(stat.substr(paren + 2));
    std::string f;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> f; i++) {  // fields 14 and 15 of proc(5)
      if (i == 14) utime = strtoull(f.c_str(), nullptr, 10);
      if (i == 15) stime = strtoull(f.c_str(), nullptr, 10);
    }
    total += double(utime + stime) / double(sysconf(_SC_CLK_TCK));
  }
  return total;
}

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}

  // TLS connections resume the last session (as a reconnecting relay or
  // stunnel client does) unless `resume` is false.
  Status Connect(Client& c, bool resume = true) {
    std::string ep = o_.target;
    bool tls = IsTls();
    if (tls) ep = "tcp://" + ep.substr(6);
    MUSCLE_RETURN_IF_ERROR(c.Connect(ep));
    if (tls) {
      // One client context per thread and kind (its random generator is
      // seeded once, not per connection).
      thread_local std::unique_ptr<tls::TlsContext> contexts[2];
      auto& ctx = contexts[resume];
      if (!ctx) {
        auto made = tls::TlsContext::ForClient(o_.identity, key_, resume ? sessions_ : nullptr);
        if (!made.ok()) return made.status();
        ctx = std::move(*made);
      }
      auto ch = tls::StartTlsChannel(c.fd(), *ctx);
      if (!ch.ok()) return ch.status();
      c.SetChannel(std::move(*ch));
    }
    MUSCLE_RETURN_IF_ERROR(c.Version(o_.msize));
    auto a = c.Attach(0, o_.aname, 0);
    return a.status();
  }

  bool IsTls() const { return o_.target.rfind("tls://", 0) == 0; }

  Status Init() {
    if (IsTls()) {
      auto keys = auth::KeyTable::Load(o_.keys);
      if (!keys.ok()) return keys.status();
      const auth::Secret* k = (*keys)->Find(o_.identity);
      if (!k) return Status(ENOENT, "no identity '" + o_.identity + "' in " + o_.keys);
      key_ = *k;
    }
    Client c;
    MUSCLE_RETURN_IF_ERROR(Connect(c));
    msize_ = c.msize();
    auto q = c.Walk(0, 1, {o_.dir});
    if (!q.ok()) {
      auto m = c.Mkdir(0, o_.dir, 0755);
      if (!m.ok() && m.err() != EEXIST) return m.status();
    } else {
      c.Clunk(1);
    }
    return Status::Ok();
  }

  std::vector<Row> Run(const std::string& w) {
    if (w == "seqwrite") return {Seq(true)};
    if (w == "seqread") return {Seq(false)};
    if (w == "smallfiles") return {SmallFiles()};
    if (w == "getattr") return {Getattr()};
    if (w == "getattr-busy") return GetattrBusy();
    if (w == "readdir") return {Readdir()};
    if (w == "connect") {
      if (!IsTls()) return {ConnectRate(true)};
      return {ConnectRate(true), ConnectRate(false)};
    }
    if (w == "idle") return {Idle()};
    fprintf(stderr, "muscle bench: unknown workload %s\n", w.c_str());
    return {};
  }

 private:
  void Progress(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    if (o_.quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\r\033[K");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
  }
  void ProgressDone() {
    if (!o_.quiet) fprintf(stderr, "\r\033[K");
  }

  // Runs body(i) on o_.conns threads; returns seconds elapsed.
  double Parallel(const std::function<void(int)>& body) {
    auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int i = 0; i < o_.conns; i++) ts.emplace_back(body, i);
    for (auto& t : ts) t.join();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }

  void Fail(const std::string& what, const Status& s) {
    std::lock_guard<std::mutex> g(mu_);
    if (error_.empty()) error_ = what + ": " + s.ToString();
  }

  Row Finish(Row r) {
    ProgressDone();
    if (!error_.empty()) {
      r.note = "ERROR " + error_;
      r.value = 0;
      error_.clear();
    }
    return r;
  }

  // Fills buf with data that differs per block and per run, so that
  // nothing dedups: not within a file, nor against a file an earlier run
  // (or round) wrote, which a content-addressed store would not write again.
  static void Fill(std::string& buf, uint64_t seed) {
    static const uint64_t run = (uint64_t(std::random_device()()) << 32) ^ std::random_device()();
    uint64_t x = (seed ^ run) * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i + 8 <= buf.size(); i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      memcpy(buf.data() + i, &x, 8);
    }
  }

  Row Seq(bool write) {
    Row r{write ? "seqwrite" : "seqread", o_.conns, "MB/s"};
    uint64_t per = o_.size / uint64_t(o_.conns);
    uint32_t io = msize_ - kIoHeaderSize;
    if (!write) {
      // Make sure the files exist (untimed).
      Client c;
      if (Connect(c).ok() && c.WalkPath(0, 1, o_.dir + "/seq-0").err() == ENOENT) Seq(true);
    }
    std::atomic<uint64_t> done{0};
    std::atomic<bool> stop{false};
    double cpu_before = o_.server_pids.empty() ? -1 : CpuSeconds(o_.server_pids);
    std::thread progress([&] {
      while (!stop) {
        Progress("%s: %.0f / %.0f MiB", r.workload.c_str(), done / 1048576.0,
                 double(per * uint64_t(o_.conns)) / 1048576.0);
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    });
    double secs = Parallel([&](int i) {
      Client c;
      Status s = Connect(c);
      if (!s.ok()) return Fail("connect", s);
      std::string name = "seq-" + std::to_string(i);
      if (write) {
        if (!(s = c.WalkPath(0, 1, o_.dir)).ok()) return Fail("walk", s);
        auto q = c.Create(1, name, O_RDWR | O_TRUNC, 0644);
        if (!q.ok()) {
          c.Clunk(1);
          if (!(s = c.WalkPath(0, 1, o_.dir + "/" + name)).ok()) return Fail("walk", s);
          auto op = c.Open(1, O_RDWR | O_TRUNC);
          if (!op.ok()) return Fail("open", op.status());
        }
      } else {
        if (!(s = c.WalkPath(0, 1, o_.dir + "/" + name)).ok()) return Fail("walk", s);
        auto op = c.Open(1, O_RDONLY);
        if (!op.ok()) return Fail("open", op.status());
      }
      std::string buf(io, '\0');
      uint64_t next = 0, acked = 0;
      int outstanding = 0;
      uint16_t tag = 1;
      while (acked < per) {
        while (outstanding < o_.inflight && next < per) {
          uint32_t n = uint32_t(std::min<uint64_t>(io, per - next));
          Message m;
          if (write) {
            Fill(buf, (uint64_t(i) << 40) + next);
            m = Twrite{1, next, Data{buf.substr(0, n)}};
          } else {
            m = Tread{1, next, n};
          }
          if (!(s = c.Send(tag++, m)).ok()) return Fail("send", s);
          if (tag == kNoTag) tag = 1;
          next += n;
          outstanding++;
        }
        auto rep = c.Receive();
        if (!rep.ok()) return Fail("receive", rep.status());
        outstanding--;
        uint64_t got = 0;
        if (auto* w = std::get_if<Rwrite>(&*rep)) got = w->count;
        else if (auto* rd = std::get_if<Rread>(&*rep)) got = rd->data.bytes.size();
        else return Fail(write ? "write" : "read", Status(EIO, "error reply"));
        if (got == 0) return Fail("io", Status(EIO, "short transfer"));
        acked += got;
        done += got;
      }
      if (write) c.Fsync(1);
      c.Clunk(1);
    });
    stop = true;
    progress.join();
    r.value = double(done) / 1e6 / secs;
    r.note = std::to_string(done / 1048576) + " MiB, " + std::to_string(o_.inflight) +
             " in flight, msize " + std::to_string(msize_);
    double cpu_after = cpu_before < 0 ? -1 : CpuSeconds(o_.server_pids);
    if (cpu_after >= 0 && done > 0) {
      r.server_cpu_s_per_gib = (cpu_after - cpu_before) / (double(done) / double(1ull << 30));
      char b[64];
      snprintf(b, sizeof b, ", server CPU %.2f s/GiB", r.server_cpu_s_per_gib);
      r.note += b;
    }
    return Finish(r);
  }

  // Runs op() repeatedly on every connection for o_.seconds; collects
  // per-op latency.
  // With `until`, runs until it becomes true instead.
  Row Timed(Row r, const std::function<Status(Client&, int, uint64_t)>& setup,
            const std::function<Status(Client&, int, uint64_t)>& op,
            const std::atomic<bool>* until = nullptr) {
    std::vector<std::vector<float>> lat(size_t(o_.conns));
    std::atomic<uint64_t> ops{0};
    auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(o_.seconds));
    double secs = Parallel([&](int i) {
      Client c;
      Status s = Connect(c);
      if (!s.ok()) return Fail("connect", s);
      if (setup && !(s = setup(c, i, 0)).ok()) return Fail("setup", s);
      for (uint64_t k = 0; until ? !until->load() : Clock::now() < end; k++) {
        auto t0 = Clock::now();
        if (!(s = op(c, i, k)).ok()) return Fail(r.workload, s);
        lat[size_t(i)].push_back(float(std::chrono::duration<double, std::micro>(Clock::now() - t0).count()));
        if ((++ops & 1023) == 0 && i == 0) Progress("%s: %llu ops", r.workload.c_str(), (unsigned long long)ops.load());
      }
    });
    std::vector<float> all;
    for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end());
    if (!all.empty()) {
      r.p50_us = all[all.size() / 2];
      r.p99_us = all[std::min(all.size() - 1, all.size() * 99 / 100)];
    }
    r.value = double(ops) / secs;
    return Finish(r);
  }

  Row SmallFiles() {
    std::string block(4096, 'x');
    return Timed(
        Row{"smallfiles", o_.conns, "ops/s"},
        [&](Client& c, int, uint64_t) { return c.WalkPath(0, 1, o_.dir); },
        [&](Client& c, int i, uint64_t k) -> Status {
          std::string name = "small-" + std::to_string(i) + "-" + std::to_string(k);
          MUSCLE_RETURN_IF_ERROR(c.Walk(1, 2, {}).status());
          MUSCLE_RETURN_IF_ERROR(c.Create(2, name, O_RDWR, 0644).status());
          Fill(block, (uint64_t(i) << 40) + k);
          MUSCLE_RETURN_IF_ERROR(c.Write(2, 0, block).status());
          MUSCLE_RETURN_IF_ERROR(c.Clunk(2));
          MUSCLE_RETURN_IF_ERROR(c.Walk(1, 3, {name}).status());
          MUSCLE_RETURN_IF_ERROR(c.GetAttr(3).status());
          MUSCLE_RETURN_IF_ERROR(c.Clunk(3));
          Status u = c.Unlink(1, name);
          if (u.err() != EOPNOTSUPP) return u;
          // Like the kernel: servers without Tunlinkat (diod) get Tremove.
          MUSCLE_RETURN_IF_ERROR(c.Walk(1, 3, {name}).status());
          return c.Rpc(Tremove{3}).status();
        });
  }

  Status EnsureDir(const std::string& name, int entries) {
    Client c;
    MUSCLE_RETURN_IF_ERROR(Connect(c));
    MUSCLE_RETURN_IF_ERROR(c.WalkPath(0, 1, o_.dir));
    if (c.Walk(1, 2, {name}).ok()) {
      MUSCLE_RETURN_IF_ERROR(c.Open(2, O_RDONLY).status());
      auto names = c.ReadDirNames(2);
      if (names.ok() && int(names->size()) >= entries) return Status::Ok();
      c.Clunk(2);
    } else {
      auto m = c.Mkdir(1, name, 0755);
      if (!m.ok() && m.err() != EEXIST) return m.status();
    }
    MUSCLE_RETURN_IF_ERROR(c.Walk(1, 2, {name}).status());
    for (int e = 0; e < entries; e++) {
      if (e % 500 == 0) Progress("creating %s: %d / %d", name.c_str(), e, entries);
      MUSCLE_RETURN_IF_ERROR(c.Walk(2, 3, {}).status());
      auto q = c.Create(3, "entry-" + std::to_string(e), O_WRONLY, 0644);
      c.Clunk(3);
      if (!q.ok() && q.err() != EEXIST) return q.status();
    }
    return Status::Ok();
  }

  // getattr while one more connection writes o_.size bytes; the getattr
  // clients run exactly as long as the write.
  std::vector<Row> GetattrBusy() {
    std::string dir = "getattr-" + std::to_string(o_.entries);
    Status s = EnsureDir(dir, o_.entries);
    if (!s.ok()) Fail("setup", s);
    Options wo = o_;
    wo.conns = 1;
    wo.quiet = true;
    Bench writer(wo);
    Row w{"seqwrite", 1, "MB/s"};
    if (!(s = writer.Init()).ok()) {
      w.note = "ERROR " + s.ToString();
      return {w};
    }
    std::atomic<bool> written{false};
    std::thread t([&] {
      w = writer.Seq(true);
      written = true;
    });
    Row g = Getattr(&written);
    t.join();
    g.workload = "getattr-busy";
    w.workload = "seqwrite-busy";
    w.note += ", beside getattr";
    g.note += ", beside a " + std::to_string(o_.size >> 20) + " MiB write";
    return {g, w};
  }

  Row Getattr(const std::atomic<bool>* until = nullptr) {
    std::string dir = "getattr-" + std::to_string(o_.entries);
    Status s = EnsureDir(dir, o_.entries);
    if (!s.ok()) Fail("setup", s);
    int n = o_.entries;
    return Timed(
        Row{"getattr", o_.conns, "ops/s", 0, -1, -1, "directory of " + std::to_string(n)},
        [&](Client& c, int, uint64_t) { return c.WalkPath(0, 1, o_.dir + "/" + dir); },
        [&](Client& c, int i, uint64_t k) -> Status {
          std::string name = "entry-" + std::to_string((k * 7919 + uint64_t(i) * 104729) % uint64_t(n));
          MUSCLE_RETURN_IF_ERROR(c.Walk(1, 2, {name}).status());
          MUSCLE_RETURN_IF_ERROR(c.GetAttr(2).status());
          return c.Clunk(2);
        },
        until);
  }

  Row Readdir() {
    std::string dir = "getattr-" + std::to_string(o_.entries);
    Status s = EnsureDir(dir, o_.entries);
    if (!s.ok()) Fail("setup", s);
    std::atomic<uint64_t> entries{0};
    Row r = Timed(
        Row{"readdir", o_.conns, "listings/s"},
        [&](Client& c, int, uint64_t) { return c.WalkPath(0, 1, o_.dir + "/" + dir); },
        [&](Client& c, int, uint64_t) -> Status {
          MUSCLE_RETURN_IF_ERROR(c.Walk(1, 2, {}).status());
          MUSCLE_RETURN_IF_ERROR(c.Open(2, O_RDONLY).status());
          auto names = c.ReadDirNames(2);
          if (!names.ok()) return names.status();
          entries += names->size();
          return c.Clunk(2);
        });
    r.note = std::to_string(o_.entries) + " entries, " +
             std::to_string(uint64_t(double(entries) / std::max(o_.seconds, 0.001))) + " entries/s";
    return r;
  }

  // Over TLS: "connect" resumes sessions from tickets, "connect-full" does
  // the whole ECDHE-PSK key exchange every time.
  Row ConnectRate(bool resume) {
    Row r = Timed(Row{resume ? "connect" : "connect-full", o_.conns, "conn/s"}, nullptr,
                  [&](Client&, int, uint64_t) -> Status {
                    Client c;
                    MUSCLE_RETURN_IF_ERROR(Connect(c, resume));
                    return c.Clunk(0);
                  });
    if (IsTls()) r.note = resume ? "session resumed from a ticket" : "full ECDHE-PSK handshake";
    return r;
  }

  static long RssKiB(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("VmRSS:", 0) == 0) return atol(line.c_str() + 6);
    return -1;
  }

  Row Idle() {
    Row r{"idle", o_.idle, "KiB/conn"};
    if (o_.server_pid <= 0) {
      r.note = "skipped: pass --server-pid";
      return r;
    }
    long before = RssKiB(o_.server_pid);
    std::vector<std::unique_ptr<Client>> held;
    for (int i = 0; i < o_.idle; i++) {
      auto c = std::make_unique<Client>();
      Status s = Connect(*c);
      if (!s.ok()) {
        r.note = "stopped at " + std::to_string(i) + ": " + s.ToString();
        break;
      }
      held.push_back(std::move(c));
      if (i % 100 == 0) Progress("idle: %d connections", i);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    long after = RssKiB(o_.server_pid);
    r.conns = int(held.size());
    if (!held.empty()) r.value = double(after - before) / double(held.size());
    if (r.note.empty())
      r.note = std::to_string(held.size()) + " held, server RSS " + std::to_string(before) +
               " -> " + std::to_string(after) + " KiB";
    return Finish(r);
  }

  Options o_;
  auth::Secret key_;
  std::shared_ptr<tls::SessionCache> sessions_ = std::make_shared<tls::SessionCache>();
  uint32_t msize_ = 8192;
  std::mutex mu_;
  std::string error_;
};

std::string Json(const Row& r, const std::string& label) {
  char b[1024];
  snprintf(b, sizeof b,
           "{\"target\":\"%s\",\"workload\":\"%s\",\"conns\":%d,\"metric\":\"%s\",\"value\":%.2f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"server_cpu_s_per_gib\":%.3f,\"note\":\"%s\"}",
           label.c_str(), r.workload.c_str(), r.conns, r.metric.c_str(), r.value, r.p50_us,
           r.p99_us, r.server_cpu_s_per_gib, r.note.c_str());
  return b;
}

}  // namespace

int BenchMain(int argc, char** argv) {
  Options o;
  std::string workloads = "seqwrite,seqread,smallfiles,getattr,readdir,connect";
  for (int i = 0; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        fprintf(stderr, "muscle bench: %s needs a value\n", a.c_str());
        exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      fputs(kUsage, stdout);
      return 0;
    } else if (a == "--target") o.target = val();
    else if (a == "--identity") o.identity = val();
    else if (a == "--keys") o.keys = val();
    else if (a == "--workload") workloads = val();
    else if (a == "--conns") o.conns = std::max(1, atoi(val().c_str()));
    else if (a == "--size") o.size = strtoull(val().c_str(), nullptr, 10);
    else if (a == "--msize") o.msize = uint32_t(atoi(val().c_str()));
    else if (a == "--inflight") o.inflight = std::max(1, atoi(val().c_str()));
    else if (a == "--seconds") o.seconds = atof(val().c_str());
    else if (a == "--entries") o.entries = std::max(1, atoi(val().c_str()));
    else if (a == "--idle") o.idle = std::max(1, atoi(val().c_str()));
    else if (a == "--server-pid") {
      std::string list = val();
      for (size_t i = 0; i <= list.size();) {
        size_t j = list.find(',', i);
        if (j == std::string::npos) j = list.size();
        int pid = atoi(list.substr(i, j - i).c_str());
        if (pid <= 0) {
          fprintf(stderr, "muscle bench: --server-pid wants process ids separated by commas: '%s'\n", list.c_str());
          return 2;
        }
        o.server_pids.push_back(pid);
        i = j + 1;
      }
      o.server_pid = o.server_pids[0];
    }
    else if (a == "--dir") o.dir = val();
    else if (a == "--aname") o.aname = val();
    else if (a == "--label") o.label = val();
    else if (a == "--json") o.json = true;
    else if (a == "--quiet") o.quiet = true;
    else {
      fprintf(stderr, "muscle bench: unknown option %s\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (o.target.empty()) {
    fputs(kUsage, stderr);
    return 2;
  }
  if (o.label.empty()) o.label = o.target;
  size_t pos = 0;
  while (pos <= workloads.size()) {
    size_t c = workloads.find(',', pos);
    if (c == std::string::npos) c = workloads.size();
    if (c > pos) o.workloads.push_back(workloads.substr(pos, c - pos));
    pos = c + 1;
  }
  Bench b(o);
  Status s = b.Init();
  if (!s.ok()) {
    fprintf(stderr, "muscle bench: %s: %s\n", o.target.c_str(), s.ToString().c_str());
    return 1;
  }
  bool failed = false;
  if (!o.json) printf("%-11s %5s %12s %-11s %9s %9s  %s\n", "workload", "conns", "value", "metric", "p50_us", "p99_us", "note");
  for (auto& w : o.workloads) {
    for (auto& r : b.Run(w)) {
      failed |= r.note.rfind("ERROR", 0) == 0;
      if (o.json) printf("%s\n", Json(r, o.label).c_str());
      else printf("%-11s %5d %12.1f %-11s %9.1f %9.1f  %s\n", r.workload.c_str(), r.conns, r.value,
                  r.metric.c_str(), r.p50_us, r.p99_us, r.note.c_str());
      fflush(stdout);
    }
  }
  return failed ? 1 : 0;
}

}  // namespace muscle::bench
