#include "store/bucket_pack_store.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>

#include "common/log.h"
#include "common/threads.h"
#include "store/bucket_index.h"
#include "store/vfs.h"

namespace muscle::store {

namespace {

constexpr size_t kMaxFds = 64;
const char kPackPrefix[] = "packs/";
const char kIndexPrefix[] = "index/";
const char kCatalog[] = "catalog";

std::chrono::steady_clock::time_point After(double seconds) {
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
}

std::string Hex(uint64_t v) {
  char b[20];
  snprintf(b, sizeof b, "%016llx", (unsigned long long)v);
  return b;
}

std::string Mib(uint64_t bytes) {
  char b[32];
  snprintf(b, sizeof b, "%.1f MiB", double(bytes) / (1 << 20));
  return b;
}

// 128 random bits in hex: an object's name says nothing about what is in it.
Result<std::string> RandomName() {
  unsigned char r[16];
  size_t got = 0;
  while (got < sizeof r) {
    ssize_t n = getrandom(r + got, sizeof r - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(errno, std::string("getrandom: ") + strerror(errno));
    got += size_t(n);
  }
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (unsigned char c : r) {
    s += digits[c >> 4];
    s += digits[c & 15];
  }
  return s;
}

// The first line of a small file, "" when there is none.
std::string ReadLine(const std::string& path) {
  std::string line;
  if (FILE* f = fopen(path.c_str(), "r")) {
    char buf[128];
    if (fgets(buf, sizeof buf, f)) line = buf;
    fclose(f);
  }
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

Status WriteAll(int fd, const std::string& data, const std::string& what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus(n < 0 ? errno : EIO, "write " + what);
    done += size_t(n);
  }
  return Status::Ok();
}

}  // namespace

struct BucketPackStore::Shared {
  struct Uploaded {
    std::string name;
    uint64_t size = 0;
  };
  struct Job {
    uint64_t id, size, gen;
    bool index_only = false;  // an uploaded pack whose index object is missing
  };
  std::string manifest_path;
  Mutex mu;
  CondVar cv;  // work for the uploader; progress for Drain
  std::map<uint64_t, Uploaded> uploaded GUARDED_BY(mu);
  std::deque<Job> uploads GUARDED_BY(mu);        // the front one may be in flight
  // Object keys to delete; one with `after` set waits until every pack up
  // to that one is uploaded (gc: the live records it moved are in those).
  struct Delete {
    std::string key;
    uint64_t after = 0;
  };
  std::deque<Delete> deletes GUARDED_BY(mu);
  std::map<uint64_t, uint64_t> gen GUARDED_BY(mu);  // bumped when a pack's upload is voided
  std::map<uint64_t, uint64_t> cached GUARDED_BY(mu);    // cache files: id -> bytes
  std::map<uint64_t, uint64_t> last_use GUARDED_BY(mu);  // id -> use tick
  uint64_t tick GUARDED_BY(mu) = 0;
  uint64_t evict_epoch GUARDED_BY(mu) = 0;  // readers drop descriptors when it moves
  bool busy GUARDED_BY(mu) = false;          // the uploader is working on the front
  bool stop GUARDED_BY(mu) = false;
  int manifest_fd GUARDED_BY(mu) = -1;
  BucketStats stats GUARDED_BY(mu);
  // Set before the uploader starts: the store's id and, for an encrypted
  // store, its key (index objects and the catalog are sealed under it).
  std::string store_id;
  std::shared_ptr<const crypto::MasterKey> key;
  // The catalog to publish once pack `catalog_needs` (and every one
  // before it) is uploaded; catalog_pending until it is.
  std::string catalog GUARDED_BY(mu);
  uint64_t catalog_needs GUARDED_BY(mu) = 0;
  bool catalog_pending GUARDED_BY(mu) = false;
  uint64_t catalog_gen GUARDED_BY(mu) = 0;

  // Read-ahead (the header's Reads): range buffers, shared by the writer
  // and its readers, filled by the fetch threads.
  struct Range {
    enum State { kFree, kQueued, kFetching, kReady, kFailed };
    State state = kFree;
    std::string key;  // the object (names are never reused)
    uint64_t id = 0, from = 0;
    size_t len = 0;
    Status error;  // of a failed fetch
    int pins = 0;  // readers waiting for it or copying out of it
    bool ahead = false;  // fetched ahead and not read yet
    uint64_t use = 0;
    std::unique_ptr<char[]> buf;  // read_ahead bytes once used; no zero-fill
  };
  std::shared_ptr<s3::ObjectStore> bucket;  // for the fetch threads
  size_t range_size = 0, depth = 0;
  std::vector<Range> ranges GUARDED_BY(mu);
  // Queued ranges: first the `on_demand` ones readers wait for, oldest
  // first, then those fetched ahead, in order.
  std::deque<size_t> fetches GUARDED_BY(mu);
  size_t on_demand GUARDED_BY(mu) = 0;
  CondVar fetch_cv;                           // a queued fetch; a fetch done
  std::vector<std::thread> fetchers GUARDED_BY(mu);
  uint64_t range_tick GUARDED_BY(mu) = 0;

  // The buffer holding `from` of `key` (not a failed one), or -1.
  int FindRange(const std::string& key, uint64_t from) REQUIRES(mu) {
    for (size_t i = 0; i < ranges.size(); i++)
      if (ranges[i].state != Range::kFree && ranges[i].state != Range::kFailed && ranges[i].key == key &&
          ranges[i].from == from)
        return int(i);
    return -1;
  }
  // A reader now waits for queued range i, fetched ahead: it moves to the
  // end of the fetches readers wait for.
  void Promote(size_t i) REQUIRES(mu) {
    for (size_t p = on_demand; p < fetches.size(); p++)
      if (fetches[p] == i) {
        fetches.erase(fetches.begin() + long(p));
        fetches.insert(fetches.begin() + long(on_demand++), i);
        return;
      }
  }
  // A buffer to fetch into: free or failed first, else the least recently
  // used ready one (`ahead`: only one already read), or -1.
  int TakeRange(bool ahead) REQUIRES(mu) {
    int best = -1;
    for (size_t i = 0; i < ranges.size(); i++) {
      Range& r = ranges[i];
      if (r.pins) continue;
      if (r.state == Range::kFree || r.state == Range::kFailed) return int(i);
      if (r.state != Range::kReady || (ahead && r.ahead)) continue;
      if (best < 0 || r.use < ranges[size_t(best)].use) best = int(i);
    }
    return best;
  }
  // Queues the fetch of range `from` (`len` bytes) of `key` into buffer i.
  void Fetch(size_t i, uint64_t id, const std::string& key, uint64_t from, size_t len, bool ahead) REQUIRES(mu) {
    Range& r = ranges[i];
    r.state = Range::kQueued;
    r.key = key;
    r.id = id;
    r.from = from;
    r.len = len;
    r.error = Status::Ok();
    r.ahead = ahead;
    r.use = ++range_tick;
    if (!r.buf) r.buf.reset(new char[range_size]);
    // A reader waits for a fetch on demand: it goes before those ahead
    // (after the other fetches readers wait for, so none is overtaken
    // for ever).
    if (ahead) fetches.push_back(i);
    else fetches.insert(fetches.begin() + long(on_demand++), i);
    if (fetchers.empty())
      for (size_t n = 0; n < depth; n++) fetchers.push_back(StartThread("bucket-fetch", [this] { FetcherMain(); }));
    fetch_cv.SignalAll();
  }
  void FetcherMain() {
    MutexLock l(&mu);
    for (;;) {
      while (!stop && fetches.empty()) fetch_cv.Wait(&mu);
      if (stop) return;
      size_t i = fetches.front();
      fetches.pop_front();
      if (on_demand) on_demand--;
      Range& r = ranges[i];
      r.state = Range::kFetching;
      std::string key = r.key;
      uint64_t from = r.from;
      size_t len = r.len;
      char* buf = r.buf.get();
      ++stats.bucket_reads;
      if (r.ahead) ++stats.reads_ahead;
      l.Unlock();
      Status s = bucket->GetRange(key, from, len, buf);
      l.Lock();
      r.state = s.ok() ? Range::kReady : Range::kFailed;
      r.error = s;
      fetch_cv.SignalAll();
    }
  }
  // Stops the fetch threads (a fetch in flight ends first; queued ones
  // fail); the caller joins them.
  std::vector<std::thread> StopFetchers() REQUIRES(mu) {
    for (size_t i : fetches) {
      ranges[i].state = Range::kFailed;
      ranges[i].error = Status(ECANCELED, "the store is closing");
    }
    fetches.clear();
    on_demand = 0;
    fetch_cv.SignalAll();
    return std::move(fetchers);
  }

  // Deletes an uploaded pack's object and its index object (see Delete).
  void DeleteUpload(const std::string& name, uint64_t after = 0) REQUIRES(mu) {
    deletes.push_back({kPackPrefix + name, after});
    deletes.push_back({kIndexPrefix + name, after});
  }
  // Whether every pack up to `n` is uploaded (or gone from the cache).
  bool UploadedUpTo(uint64_t n) REQUIRES(mu) {
    for (const Job& j : uploads)
      if (j.id <= n && !j.index_only) return false;
    return n == 0 || uploaded.count(n) || !cached.count(n);
  }
  // The first delete that may run now, or deletes.end().
  std::deque<Delete>::iterator ReadyDelete() REQUIRES(mu) {
    for (auto it = deletes.begin(); it != deletes.end(); ++it)
      if (it->after == 0 || UploadedUpTo(it->after)) return it;
    return deletes.end();
  }
  // Whether every pack up to the one the catalog needs is uploaded.
  bool CatalogReady() REQUIRES(mu) {
    if (!catalog_pending) return false;
    for (const Job& j : uploads)
      if (j.id <= catalog_needs) return false;
    return catalog_needs == 0 || uploaded.count(catalog_needs) || !cached.count(catalog_needs);
  }

  // Appends a manifest line and syncs it.
  Status Record(const std::string& line) REQUIRES(mu) {
    if (manifest_fd < 0) return Status(EBADF, "the bucket manifest is not open");
    MUSCLE_RETURN_IF_ERROR(WriteAll(manifest_fd, line, manifest_path));
    if (fsync(manifest_fd) != 0) return ErrnoStatus(errno, "sync " + manifest_path);
    return Status::Ok();
  }
  // Forgets pack `id`'s upload (if any): its object is deleted, a queued
  // upload dropped, one in flight voided.
  // Queues the upload of sealed pack `id` of `size` bytes.
  void Queue(uint64_t id, uint64_t size) REQUIRES(mu) {
    uploads.push_back({id, size, gen[id]});
    stats.pending_bytes += size;
    cv.SignalAll();
  }
  // `after`: its objects are deleted only once every pack up to that one
  // is uploaded (0: at once).
  void Void(uint64_t id, uint64_t after = 0) REQUIRES(mu) {
    ++gen[id];
    for (auto it = uploads.begin(); it != uploads.end();) {
      if (it->id == id) {
        if (!it->index_only) stats.pending_bytes -= it->size;
        it = uploads.erase(it);
      } else {
        ++it;
      }
    }
    auto u = uploaded.find(id);
    if (u != uploaded.end()) {
      Status s = Record("D " + Hex(id) + (after ? " " + Hex(after) : std::string()) + "\n");
      if (!s.ok()) Log("bucket: %s (the upload of pack %s is deleted anyway)", s.ToString().c_str(), Hex(id).c_str());
      DeleteUpload(u->second.name, after);
      uploaded.erase(u);
    }
    cv.SignalAll();
  }
};

BucketPackStore::BucketPackStore(std::shared_ptr<s3::ObjectStore> bucket, std::string cache_dir,
                                 Options options)
    : shared_(std::make_shared<Shared>()),
      bucket_(std::move(bucket)),
      dir_(std::move(cache_dir)),
      options_(options) {
  shared_->manifest_path = dir_ + "/bucket-manifest";
  shared_->bucket = bucket_;
  shared_->range_size = std::max<size_t>(options_.read_ahead, 1);
  shared_->depth = std::max<size_t>(options_.read_ahead_depth, 1);
  {
    MutexLock l(&shared_->mu);
    shared_->ranges.resize(std::max(options_.read_ahead_slots, shared_->depth + 1));
  }
  cache_ = std::make_unique<LocalPackStore>(dir_, LocalPackStore::Mode::kWrite);
  cache_->pack_target = options_.pack_target;
}

BucketPackStore::BucketPackStore(std::shared_ptr<Shared> shared,
                                 std::shared_ptr<s3::ObjectStore> bucket, std::string cache_dir,
                                 Options options)
    : shared_(std::move(shared)),
      bucket_(std::move(bucket)),
      dir_(std::move(cache_dir)),
      options_(options),
      read_only_(true) {}

BucketPackStore::~BucketPackStore() {
  if (!read_only_) {
    std::vector<std::thread> fetchers;
    {
      MutexLock l(&shared_->mu);
      shared_->stop = true;
      fetchers = shared_->StopFetchers();
    }
    shared_->cv.SignalAll();
    for (auto& t : fetchers) t.join();
  }
  if (uploader_.joinable()) {
    uploader_.join();
    MutexLock l(&shared_->mu);
    if (!shared_->uploads.empty())
      Log("bucket: stopping with %zu packs (%s) not yet uploaded to %s: they stay in %s and upload at the next start",
          shared_->uploads.size(), Mib(shared_->stats.pending_bytes).c_str(), bucket_->Describe().c_str(),
          dir_.c_str());
    if (shared_->manifest_fd >= 0) close(shared_->manifest_fd);
    shared_->manifest_fd = -1;
  }
  CloseFds();
}

void BucketPackStore::CloseFds() {
  for (auto& [id, fd] : fds_) close(fd);
  fds_.clear();
}

Status BucketPackStore::Open(const std::string& owner, const std::map<uint64_t, uint64_t>& committed) {
  if (read_only_) return Status(EROFS, "a bucket reader cannot be opened as a writer");
  if (mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir " + dir_);

  // The bucket prefix belongs to one store, and to one instance of it.
  auto have = bucket_->Get("owner");
  std::string local_token = ReadLine(dir_ + "/bucket-owner");
  if (have.ok()) {
    std::string o = *have;
    while (!o.empty() && (o.back() == '\n' || o.back() == '\r')) o.pop_back();
    std::string id = o.substr(0, o.find(' '));
    std::string token = o.find(' ') == std::string::npos ? "" : o.substr(o.find(' ') + 1);
    if (id != owner)
      return Status(EEXIST, bucket_->Describe() + " belongs to another store (" + id + ", this one is " + owner +
                                "): give each store its own bucket prefix");
    if (!options_.taking_over && !token.empty() && token != local_token)
      return Status(EEXIST, bucket_->Describe() + " was taken over by another instance of store " + owner +
                                " (musclefs restore-from elsewhere): this one must not use it any more");
    if (!options_.taking_over && token.empty()) MUSCLE_RETURN_IF_ERROR(TakeOver(*bucket_, dir_, owner));
  } else if (have.err() == ENOENT) {
    MUSCLE_RETURN_IF_ERROR(TakeOver(*bucket_, dir_, owner));
  } else {
    return Status(have.err(), "cannot reach the bucket: " + have.status().message());
  }

  // The manifest: what was uploaded.
  std::map<uint64_t, Shared::Uploaded> uploaded;
  std::map<std::string, uint64_t> gc_waits;  // object key -> pack to wait for
  if (FILE* f = fopen(shared_->manifest_path.c_str(), "r")) {
    char line[256];
    while (fgets(line, sizeof line, f)) {
      unsigned long long id, size;
      char name[64];
      if (sscanf(line, "U %llx %63s %llu", &id, name, &size) == 3) {
        uploaded[id] = {name, size};
      } else if (sscanf(line, "D %llx", &id) == 1) {
        // "D <id> <after>": removed by gc; its objects wait for the upload
        // of pack <after>, which holds what gc moved out of it.
        unsigned long long did, after = 0;
        if (sscanf(line, "D %llx %llx", &did, &after) == 2 && after && uploaded.count(id)) {
          gc_waits[kPackPrefix + uploaded[id].name] = after;
          gc_waits[kIndexPrefix + uploaded[id].name] = after;
        }
        uploaded.erase(id);
      }
      // Anything else is a line torn by a crash: the upload it would have
      // recorded is an orphan, deleted below.
    }
    fclose(f);
  }
  std::vector<std::string> deletes;  // once the committed packs are all uploaded
  for (auto it = uploaded.begin(); it != uploaded.end();) {
    auto c = committed.find(it->first);
    if (c == committed.end() || c->second != it->second.size) {
      deletes.push_back(kPackPrefix + it->second.name);
      deletes.push_back(kIndexPrefix + it->second.name);
      it = uploaded.erase(it);
    } else {
      ++it;
    }
  }

  // The cache: which committed packs are here; the others must be uploaded.
  std::set<uint64_t> local;
  for (uint64_t id : cache_->Containers()) local.insert(id);
  uint64_t open = committed.empty() ? 0 : committed.rbegin()->first;
  if (open && !local.count(open) && uploaded.count(open)) {
    // Appends go to the open pack: bring it back into the cache.
    auto body = bucket_->Get(kPackPrefix + uploaded[open].name);
    if (!body.ok()) return Status(body.err(), "fetch the open pack: " + body.status().message());
    std::string path = cache_->PathOf(open);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus(errno, "create " + path);
    Status w = WriteAll(fd, *body, path);
    if (w.ok() && fsync(fd) != 0) w = ErrnoStatus(errno, "sync " + path);
    close(fd);
    MUSCLE_RETURN_IF_ERROR(w);
    MUSCLE_RETURN_IF_ERROR(SyncDir(dir_));
    local.insert(open);
  }
  std::map<uint64_t, uint64_t> in_cache;
  for (auto& [id, size] : committed) {
    if (local.count(id)) {
      in_cache[id] = size;
    } else if (!uploaded.count(id)) {
      return Status(EIO, "pack " + Hex(id) + " (" + std::to_string(size) + " bytes committed) is neither in the cache " +
                             dir_ + " nor uploaded to " + bucket_->Describe());
    }
  }
  MUSCLE_RETURN_IF_ERROR(cache_->Open(owner, in_cache));
  floor_ = cache_->mark().container;

  // Objects the manifest does not name: uploads cut short by a crash.
  std::set<std::string> named, indexed;
  for (auto& [id, u] : uploaded) {
    named.insert(kPackPrefix + u.name);
    named.insert(kIndexPrefix + u.name);
  }
  for (const char* prefix : {kPackPrefix, kIndexPrefix}) {
    auto objects = bucket_->List(prefix);
    if (!objects.ok()) return Status(objects.err(), "list the bucket: " + objects.status().message());
    std::set<std::string> present;
    for (auto& o : *objects) {
      if (std::string(prefix) == kIndexPrefix) indexed.insert(o.key);
      present.insert(o.key);
      if (!named.count(o.key)) deletes.push_back(o.key);
    }
    if (std::string(prefix) == kPackPrefix) {
      size_t missing = 0;
      for (auto& [id, u] : uploaded) missing += !present.count(kPackPrefix + u.name);
      if (missing)
        Log("bucket: WARNING: %zu of the %zu packs uploaded to %s are missing from it: reads of their data "
            "will fail (EIO); musclefs check lists what is lost",
            missing, uploaded.size(), bucket_->Describe().c_str());
    }
  }

  // Rewrite the manifest compactly.
  std::string tmp = shared_->manifest_path + ".tmp";
  std::string text;
  for (auto& [id, u] : uploaded) text += "U " + Hex(id) + " " + u.name + " " + std::to_string(u.size) + "\n";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create " + tmp);
  Status w = WriteAll(fd, text, tmp);
  if (w.ok() && fsync(fd) != 0) w = ErrnoStatus(errno, "sync " + tmp);
  close(fd);
  MUSCLE_RETURN_IF_ERROR(w);
  if (rename(tmp.c_str(), shared_->manifest_path.c_str()) != 0) return ErrnoStatus(errno, "rename " + tmp);
  MUSCLE_RETURN_IF_ERROR(SyncDir(dir_));
  int mfd = ::open(shared_->manifest_path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (mfd < 0) return ErrnoStatus(errno, "open " + shared_->manifest_path);

  size_t to_upload = 0;
  shared_->store_id = owner;
  {
    MutexLock l(&shared_->mu);
    shared_->manifest_fd = mfd;
    shared_->uploaded = std::move(uploaded);
    for (auto& [id, size] : in_cache) {
      shared_->cached[id] = size;
      if (id != open && !shared_->uploaded.count(id)) shared_->Queue(id, size);
    }
    // An open pack that was sealed early and uploaded stays sealed;
    // another waits for its seal as before the restart.
    bool open_uploaded = open && shared_->uploaded.count(open);
    shared_->stats.open_bytes = open && !open_uploaded ? committed.rbegin()->second : 0;
    if (open_uploaded) {
      cache_->SealOpen();
      sealed_early_ = open;
    }
    open_dirty_ = open && !open_uploaded && committed.rbegin()->second > kContainerHeaderSize;
    open_since_ = std::chrono::steady_clock::now();
    // (a gc that removed packs and stopped before the packs holding what it
    // moved were uploaded leaves them unnamed: they go only after those.)
    if (options_.sweep)
      for (auto& k : deletes) {
        auto w = gc_waits.find(k);
        shared_->deletes.push_back({k, w == gc_waits.end() ? 0 : w->second});
      }
    // Uploaded packs without an index object (uploaded by a version that
    // wrote none, or the index upload was lost): written now, so that the
    // bucket can rebuild the store.
    size_t reindex = 0;
    for (auto& [id, u] : shared_->uploaded)
      if (!indexed.count(kIndexPrefix + u.name)) {
        shared_->uploads.push_back({id, u.size, shared_->gen[id], true});
        reindex++;
      }
    if (reindex) Log("bucket: %zu uploaded packs have no index object in %s: writing them", reindex,
                     bucket_->Describe().c_str());
    shared_->cv.SignalAll();
    to_upload = shared_->uploads.size();
  }
  if (!deletes.empty() || to_upload)
    Log("bucket: %zu packs to upload to %s, %zu stale objects to delete", to_upload,
        bucket_->Describe().c_str(), deletes.size());
  uploader_ = StartThread("bucket-upload", [this] { UploaderMain(); });
  Evict();
  return Status::Ok();
}

Result<PutResult> BucketPackStore::Put(std::string_view data, const unsigned char (&hash)[32]) {
  if (read_only_) return Status(EROFS, "a bucket reader cannot write");
  {
    // Back-pressure: while the bucket takes uploads, wait for them to make
    // room; when it fails them, refuse at once.
    MutexLock l(&shared_->mu);
    auto until = After(options_.full_wait_s);
    for (;;) {
      // (The open pack is not counted: it is bounded by the pack target.)
      uint64_t pending = shared_->stats.pending_bytes;
      if (pending < options_.cache_limit) break;
      if (!shared_->stats.last_error.empty() || shared_->uploads.empty() ||
          std::chrono::steady_clock::now() >= until)
        return Status(ENOSPC, "the pack cache " + dir_ + " holds " + Mib(pending) + " not yet uploaded to " +
                                  bucket_->Describe() + " (its limit is " + Mib(options_.cache_limit) + ")" +
                                  (shared_->stats.last_error.empty()
                                       ? std::string()
                                       : "; last upload error: " + shared_->stats.last_error));
      shared_->cv.WaitUntil(&shared_->mu, until);
    }
  }
  auto r = cache_->Put(data, hash);
  if (!r.ok()) return r;
  last_put_ = std::chrono::steady_clock::now();
  if (r->started || !open_dirty_) {
    open_dirty_ = true;
    open_since_ = std::chrono::steady_clock::now();
  }
  MutexLock l(&shared_->mu);
  if (r->started && r->sealed.container != 0) {
    // Sealed: immutable from now on, so it uploads at once (before the
    // commit that names it: a roll-back or a crash voids the upload).
    // One sealed early is queued already.
    uint64_t id = r->sealed.container;
    shared_->cached[id] = r->sealed.size;
    if (id != sealed_early_) shared_->Queue(id, r->sealed.size);
  }
  if (r->started) sealed_early_ = 0;
  ContainerMark m = cache_->mark();
  shared_->cached[m.container] = m.size;
  shared_->stats.open_bytes = m.size;
  return r;
}

void BucketPackStore::SealOpen() {
  ContainerMark m = cache_->mark();
  cache_->SealOpen();
  open_dirty_ = false;
  sealed_early_ = m.container;
  last_early_seal_ = std::chrono::steady_clock::now();
  MutexLock l(&shared_->mu);
  shared_->Queue(m.container, m.size);
  shared_->stats.open_bytes = 0;
}

bool BucketPackStore::MaybeSealEarly() {
  if (!open_dirty_ || sealed_early_) return false;
  ContainerMark m = cache_->mark();
  if (m.container == 0 || m.size <= kContainerHeaderSize) return false;
  std::chrono::duration<double> age = std::chrono::steady_clock::now() - open_since_;
  if (age.count() < options_.seal_after_s) return false;
  SealOpen();
  return true;
}

void BucketPackStore::MaybeSealQuiet() {
  if (options_.quiet_seal_s <= 0 || !open_dirty_ || sealed_early_) return;
  ContainerMark m = cache_->mark();
  if (m.container == 0 || m.size <= kContainerHeaderSize) return;
  auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_put_).count() < options_.quiet_seal_s) return;
  bool big = m.size >= options_.pack_target / 4;
  if (!big && last_early_seal_ != std::chrono::steady_clock::time_point() &&
      std::chrono::duration<double>(now - last_early_seal_).count() < options_.seal_after_s)
    return;
  {
    MutexLock l(&shared_->mu);
    if (shared_->busy || !shared_->uploads.empty()) return;
  }
  SealOpen();
}

void BucketPackStore::Idle() {
  if (read_only_ || !cache_) return;
  if (!MaybeSealEarly()) MaybeSealQuiet();
}

Status BucketPackStore::Sync() {
  if (read_only_) return Status(EROFS, "a bucket reader cannot write");
  MUSCLE_RETURN_IF_ERROR(cache_->Sync());
  MaybeSealEarly();  // (the index's commit of this length follows)
  Evict();
  // The commit that follows makes this mark the one a roll-back returns to.
  floor_ = cache_->mark().container;
  return Status::Ok();
}

ContainerMark BucketPackStore::mark() const { return cache_ ? cache_->mark() : ContainerMark{}; }

Status BucketPackStore::RollBackTo(const ContainerMark& mark) {
  if (read_only_) return Status(EROFS, "a bucket reader cannot write");
  CloseFds();
  std::vector<uint64_t> gone;
  {
    MutexLock l(&shared_->mu);
    for (auto& [id, size] : shared_->cached)
      if (id >= mark.container) gone.push_back(id);
    for (auto& [id, u] : shared_->uploaded)
      if (id >= mark.container) gone.push_back(id);
    for (uint64_t id : gone) shared_->Void(id);
  }
  Status s = cache_->RollBackTo(mark);
  // The open pack is open again (a seal that was early is undone, and its
  // upload voided above); what it holds is not uploaded.
  sealed_early_ = 0;
  floor_ = mark.container;
  open_dirty_ = mark.size > kContainerHeaderSize;
  open_since_ = std::chrono::steady_clock::now();
  MutexLock l(&shared_->mu);
  for (auto it = shared_->cached.begin(); it != shared_->cached.end();)
    it = it->first > mark.container ? shared_->cached.erase(it) : std::next(it);
  if (mark.container != 0) shared_->cached[mark.container] = mark.size;
  shared_->stats.open_bytes = mark.size;
  return s;
}

Status BucketPackStore::Punch(ChunkLocation at, uint64_t length) {
  if (read_only_) return Status(EROFS, "a bucket reader cannot write");
  {
    MutexLock l(&shared_->mu);
    // An object cannot have holes: its dead bytes are freed when gc
    // compacts the pack.
    if (!shared_->cached.count(at.container)) return Status::Ok();
  }
  return cache_->Punch(at, length);
}

Status BucketPackStore::WaitIdle() { return cache_ ? cache_->WaitIdle() : Status::Ok(); }

std::vector<uint64_t> BucketPackStore::Containers() {
  std::set<uint64_t> ids;
  for (uint64_t id : LocalPackStore(dir_, LocalPackStore::Mode::kReadOnly).Containers()) ids.insert(id);
  MutexLock l(&shared_->mu);
  for (auto& [id, u] : shared_->uploaded) ids.insert(id);
  return {ids.begin(), ids.end()};
}

Status BucketPackStore::Records(uint64_t container, uint64_t size, std::vector<ChunkRecord>& out) {
  out.clear();
  int fd = LocalFd(container);
  if (fd >= 0)
    return WalkRecords([&](void* buf, size_t len, uint64_t at) { return vfs::FileRead(fd, buf, len, at); }, size,
                       dir_ + "/" + Hex(container) + ".pack", out);
  std::string name;
  {
    MutexLock l(&shared_->mu);
    auto u = shared_->uploaded.find(container);
    if (u == shared_->uploaded.end())
      return Status(ENOENT, "pack " + Hex(container) + " is neither in the cache nor uploaded");
    name = kPackPrefix + u->second.name;
  }
  auto body = bucket_->Get(name);
  if (!body.ok()) return Status(body.err(), "pack " + Hex(container) + ": " + body.status().message());
  const std::string& b = *body;
  return WalkRecords(
      [&](void* buf, size_t len, uint64_t at) {
        if (at > b.size() || len > b.size() - at) return EIO;
        memcpy(buf, b.data() + at, len);
        return 0;
      },
      size, bucket_->Describe() + "/" + name, out);
}

Status BucketPackStore::Remove(uint64_t container) {
  if (read_only_) return Status(EROFS, "a bucket reader cannot write");
  auto it = fds_.find(container);
  if (it != fds_.end()) {
    close(it->second);
    fds_.erase(it);
  }
  MUSCLE_RETURN_IF_ERROR(cache_->Remove(container));
  MutexLock l(&shared_->mu);
  // Its objects go once the pack gc moved its live records into (the open
  // one, or later ones) is uploaded: until then the bucket needs them.
  shared_->Void(container, cache_->mark().container);
  shared_->cached.erase(container);
  shared_->last_use.erase(container);
  return Status::Ok();
}

void BucketPackStore::ForgetCached() {
  CloseFds();
  if (cache_) cache_->ForgetCached();
}

Result<std::unique_ptr<ChunkStore>> BucketPackStore::NewReader() {
  return std::unique_ptr<ChunkStore>(new BucketPackStore(shared_, bucket_, dir_, options_));
}

int BucketPackStore::LocalFd(uint64_t id) {
  auto it = fds_.find(id);
  if (it != fds_.end()) return it->second;
  if (fds_.size() >= kMaxFds) {
    close(fds_.begin()->second);
    fds_.erase(fds_.begin());
  }
  char name[32];
  snprintf(name, sizeof name, "/%016llx.pack", (unsigned long long)id);
  int fd = open((dir_ + name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  fds_[id] = fd;
  return fd;
}

Status BucketPackStore::ReadRaw(uint64_t id, uint64_t offset, size_t len, char* out) {
  std::string name;
  uint64_t size = 0;
  {
    MutexLock l(&shared_->mu);
    if (read_only_ && evict_seen_ != shared_->evict_epoch) {
      // Descriptors of evicted files would keep their space: drop them.
      evict_seen_ = shared_->evict_epoch;
      l.Unlock();
      CloseFds();
      l.Lock();
    }
    shared_->last_use[id] = ++shared_->tick;
    auto u = shared_->uploaded.find(id);
    if (u != shared_->uploaded.end()) {
      name = kPackPrefix + u->second.name;
      size = u->second.size;
    }
  }
  int fd = LocalFd(id);
  if (fd >= 0) {
    if (int e = vfs::FileRead(fd, out, len, offset))
      return ErrnoStatus(e, "read pack " + Hex(id) + " in " + dir_ + " at " + std::to_string(offset));
    return Status::Ok();
  }
  if (name.empty()) return Status(EIO, "pack " + Hex(id) + " is neither in the cache " + dir_ + " nor uploaded");
  if (offset > size || len > size - offset)
    return Status(EIO, "pack " + Hex(id) + ": " + std::to_string(len) + " bytes at " + std::to_string(offset) +
                           " reach past its " + std::to_string(size) + " bytes");
  Status s = ReadBucket(id, name, size, offset, len, out);
  if (!s.ok()) {
    // A pack the manifest says is uploaded and the bucket does not give
    // back is lost or unreachable data: EIO (never ENOENT, which a client
    // would take for a missing file), with a log line naming it.
    Log("bucket: reading pack %s (%s) from %s failed: %s", Hex(id).c_str(), name.c_str(),
        bucket_->Describe().c_str(), s.ToString().c_str());
    return Status(s.err() == ENOENT || s.err() == ECANCELED ? EIO : s.err(), "pack " + Hex(id) + ": " + s.message());
  }
  return s;
}

Status BucketPackStore::ReadBucket(uint64_t id, const std::string& key, uint64_t size, uint64_t offset, size_t len,
                                   char* out) {
  Shared& sh = *shared_;
  const uint64_t rs = sh.range_size;
  MutexLock l(&sh.mu);
  while (len > 0) {
    uint64_t from = offset / rs * rs;
    size_t range_len = size_t(std::min<uint64_t>(rs, size - from));
    size_t piece = size_t(std::min<uint64_t>(len, from + range_len - offset));
    int i = sh.FindRange(key, from);
    bool was_ahead = i >= 0 && sh.ranges[size_t(i)].ahead;
    if (i < 0 && !sh.stop) {
      i = sh.TakeRange(false);
      if (i >= 0) sh.Fetch(size_t(i), id, key, from, range_len, false);
    }
    if (i < 0) {
      // Every buffer in use (or the store closing): this piece alone,
      // straight into the caller's memory.
      ++sh.stats.bucket_reads;
      l.Unlock();
      Status s = bucket_->GetRange(key, offset, piece, out);
      l.Lock();
      MUSCLE_RETURN_IF_ERROR(s);
    } else {
      Shared::Range& r = sh.ranges[size_t(i)];
      ++r.pins;
      if (r.state == Shared::Range::kQueued) sh.Promote(size_t(i));
      while (r.state == Shared::Range::kQueued || r.state == Shared::Range::kFetching) sh.fetch_cv.Wait(&sh.mu);
      if (r.state != Shared::Range::kReady) {
        Status e = r.error;
        --r.pins;
        return e.ok() ? Status(EIO, "the fetch of " + key + " was given up") : e;
      }
      r.ahead = false;
      r.use = ++sh.range_tick;
      l.Unlock();
      memcpy(out, r.buf.get() + (offset - from), piece);
      l.Lock();
      --r.pins;
    }
    // Sequential: this range was fetched ahead, or the one before it is
    // held. Then the next ranges are fetched, into the next packs too.
    bool sequential = was_ahead;
    if (!sequential && from >= rs) sequential = sh.FindRange(key, from - rs) >= 0;
    if (!sequential && from == 0) {
      auto prev = sh.uploaded.lower_bound(id);
      if (prev != sh.uploaded.begin()) {
        --prev;
        uint64_t last = prev->second.size == 0 ? 0 : (prev->second.size - 1) / rs * rs;
        sequential = sh.FindRange(kPackPrefix + prev->second.name, last) >= 0;
      }
    }
    if (sequential && !sh.stop) {
      uint64_t next_id = id, next_from = from, next_size = size;
      std::string next_key = key;
      for (size_t n = 0; n < sh.depth; n++) {
        next_from += rs;
        if (next_from >= next_size) {
          auto u = sh.uploaded.upper_bound(next_id);
          if (u == sh.uploaded.end() || sh.cached.count(u->first)) break;
          next_id = u->first;
          next_key = kPackPrefix + u->second.name;
          next_size = u->second.size;
          next_from = 0;
          if (next_size == 0) break;
        }
        if (sh.FindRange(next_key, next_from) >= 0) continue;
        int j = sh.TakeRange(true);
        if (j < 0) break;
        sh.Fetch(size_t(j), next_id, next_key, next_from, size_t(std::min<uint64_t>(rs, next_size - next_from)), true);
      }
    }
    offset += piece;
    out += piece;
    len -= piece;
  }
  return Status::Ok();
}

void BucketPackStore::Evict() {
  std::vector<uint64_t> victims;
  {
    MutexLock l(&shared_->mu);
    uint64_t total = 0;
    for (auto& [id, size] : shared_->cached) total += size;
    shared_->stats.cached_bytes = total;
    if (total <= options_.cache_limit) return;
    // Uploaded packs in the cache, least recently used first.
    std::vector<std::pair<uint64_t, uint64_t>> candidates;  // (last use, id)
    // Not the open pack, nor the one a failed commit's roll-back opens
    // again (an early-sealed, uploaded pack the last commit names as open;
    // packs after it are deleted by that roll-back anyway).
    uint64_t open = cache_->mark().container;
    for (auto& [id, size] : shared_->cached) {
      if (id == open || id == floor_ || !shared_->uploaded.count(id)) continue;
      auto u = shared_->last_use.find(id);
      candidates.push_back({u == shared_->last_use.end() ? 0 : u->second, id});
    }
    std::sort(candidates.begin(), candidates.end());
    for (auto& [use, id] : candidates) {
      if (total <= options_.cache_limit) break;
      total -= shared_->cached[id];
      shared_->cached.erase(id);
      victims.push_back(id);
    }
    shared_->stats.cached_bytes = total;
    shared_->stats.evictions += victims.size();
    if (!victims.empty()) ++shared_->evict_epoch;
  }
  for (uint64_t id : victims) {
    auto it = fds_.find(id);
    if (it != fds_.end()) {
      close(it->second);
      fds_.erase(it);
    }
    if (unlink(cache_->PathOf(id).c_str()) != 0 && errno != ENOENT)
      Log("bucket: evict %s: %s", cache_->PathOf(id).c_str(), strerror(errno));
  }
  if (!victims.empty()) cache_->ForgetCached();
}

void BucketPackStore::UploaderMain() {
  Shared& sh = *shared_;
  double delay = 0;
  MutexLock l(&sh.mu);
  auto back_off = [&](const Status& s, const std::string& what) REQUIRES(sh.mu) {
    delay = delay == 0 ? options_.retry_first_s : std::min(delay * 2, options_.retry_max_s);
    ++sh.stats.upload_failures;
    sh.stats.last_error = what + ": " + s.ToString();
    sh.cv.SignalAll();  // a Put waiting for room gives up
    Log("bucket: %s failed (%s); retrying in %.1f s; %zu packs (%s) not yet uploaded", what.c_str(),
        s.ToString().c_str(), delay, sh.uploads.size(), Mib(sh.stats.pending_bytes).c_str());
    auto until = After(delay);
    while (!sh.stop && std::chrono::steady_clock::now() < until) sh.cv.WaitUntil(&sh.mu, until);
  };
  for (;;) {
    while (!sh.stop && sh.uploads.empty() && sh.ReadyDelete() == sh.deletes.end() && !sh.CatalogReady())
      sh.cv.Wait(&sh.mu);
    if (sh.stop) return;
    if (sh.ReadyDelete() == sh.deletes.end() && sh.CatalogReady()) {
      uint64_t gen = sh.catalog_gen;
      std::string text = sh.catalog;
      l.Unlock();
      auto body = SealBucketObject(sh.key.get(), sh.store_id, kCatalog, text);
      Status s = body.ok() ? bucket_->Put(kCatalog, *body) : body.status();
      l.Lock();
      if (!s.ok()) {
        back_off(s, "upload of the catalog");
        continue;
      }
      delay = 0;
      sh.stats.last_error.clear();
      if (sh.catalog_gen == gen) sh.catalog_pending = false;
      sh.cv.SignalAll();
      continue;
    }
    if (auto ready = sh.ReadyDelete(); ready != sh.deletes.end()) {
      std::string key = ready->key;
      l.Unlock();
      Status s = bucket_->Delete(key);
      l.Lock();
      if (!s.ok()) {
        back_off(s, "delete " + key);
        continue;
      }
      delay = 0;
      sh.stats.last_error.clear();
      for (auto it = sh.deletes.begin(); it != sh.deletes.end(); ++it)
        if (it->key == key) {
          sh.deletes.erase(it);
          break;
        }
      sh.cv.SignalAll();
      continue;
    }
    if (sh.uploads.empty()) continue;
    Shared::Job job = sh.uploads.front();
    sh.busy = true;
    if (job.index_only) {
      auto u = sh.uploaded.find(job.id);
      std::string name = u == sh.uploaded.end() ? std::string() : u->second.name;
      l.Unlock();
      Status s = name.empty() ? Status::Ok() : WriteIndexOf(job.id, job.size, name);
      l.Lock();
      sh.busy = false;
      // Done, or given up (the pack is neither in the cache nor in the
      // bucket: nothing can index it), or moved to the back of the queue
      // so that it holds up no upload while it fails.
      for (auto it = sh.uploads.begin(); it != sh.uploads.end(); ++it)
        if (it->id == job.id && it->index_only) {
          Shared::Job again = *it;
          sh.uploads.erase(it);
          if (!s.ok() && s.err() != ENOENT) sh.uploads.push_back(again);
          break;
        }
      if (!s.ok()) {
        if (s.err() == ENOENT)
          Log("bucket: pack %s is in neither the cache nor %s: no index object can be written for it (%s)",
              Hex(job.id).c_str(), bucket_->Describe().c_str(), s.ToString().c_str());
        back_off(s, "index object of pack " + Hex(job.id));
        continue;
      }
      delay = 0;
      sh.stats.last_error.clear();
      sh.cv.SignalAll();
      continue;
    }
    l.Unlock();
    // The pack as committed: `size` bytes of its cache file.
    std::string path = dir_ + "/" + Hex(job.id) + ".pack";
    if (upload_cap_ < job.size) {
      upload_buf_.reset();  // (before the new one: one pack's worth at a time)
      upload_buf_.reset(new char[job.size]);
      upload_cap_ = job.size;
    }
    std::string_view body(upload_buf_.get(), job.size);
    Status s;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      s = ErrnoStatus(errno, "open " + path);
    } else {
      if (int e = vfs::FileRead(fd, upload_buf_.get(), job.size, 0)) s = ErrnoStatus(e, "read " + path);
      close(fd);
    }
    auto name = RandomName();
    if (s.ok() && !name.ok()) s = name.status();
    auto started = std::chrono::steady_clock::now();
    if (s.ok()) s = bucket_->Put(kPackPrefix + *name, body);
    bool pack_put = s.ok();
    // Its index object: what restore-from needs to know of this pack.
    if (s.ok()) s = PutIndex(job.id, job.size, *name, body);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    l.Lock();
    sh.busy = false;
    bool voided = sh.gen[job.id] != job.gen;
    if (voided) {
      // Rolled back or removed while in flight.
      if (pack_put) sh.DeleteUpload(*name);
      sh.cv.SignalAll();
      continue;
    }
    if (s.ok()) {
      Status r = sh.Record("U " + Hex(job.id) + " " + *name + " " + std::to_string(job.size) + "\n");
      if (!r.ok()) {
        sh.DeleteUpload(*name);
        s = r;
      }
    } else if (pack_put) {
      sh.DeleteUpload(*name);  // its index failed: both go, the upload is retried
    }
    if (!s.ok()) {
      back_off(s, "upload of pack " + Hex(job.id));
      continue;
    }
    delay = 0;
    sh.stats.last_error.clear();
    sh.uploaded[job.id] = {*name, job.size};
    ++sh.stats.uploads;
    for (auto it = sh.uploads.begin(); it != sh.uploads.end(); ++it) {
      if (it->id == job.id && it->gen == job.gen && !it->index_only) {
        sh.stats.pending_bytes -= it->size;
        sh.uploads.erase(it);
        break;
      }
    }
    (void)took;
    sh.cv.SignalAll();
  }
}

Status BucketPackStore::TakeOver(s3::ObjectStore& bucket, const std::string& dir, const std::string& owner) {
  auto token = RandomName();
  if (!token.ok()) return token.status();
  // Locally first: a crash between the two leaves this instance refused
  // (the bucket still names the old token), never two instances accepted.
  std::string path = dir + "/bucket-owner", tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create " + tmp);
  Status w = WriteAll(fd, *token + "\n", tmp);
  if (w.ok() && fsync(fd) != 0) w = ErrnoStatus(errno, "sync " + tmp);
  close(fd);
  MUSCLE_RETURN_IF_ERROR(w);
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, "rename " + tmp);
  MUSCLE_RETURN_IF_ERROR(SyncDir(dir));
  return bucket.Put("owner", owner + " " + *token + "\n");
}

Status BucketPackStore::WriteManifest(const std::string& dir, const std::string& owner,
                                      const std::vector<ManifestEntry>& entries) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir " + dir);
  // The cache directory's owner (the pack directory's "owner" file,
  // store/pack.h): Open brings the open pack into it before the cache opens.
  {
    std::string path = dir + "/owner";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus(errno, "create " + path);
    Status w = WriteAll(fd, owner + "\n", path);
    if (w.ok() && fsync(fd) != 0) w = ErrnoStatus(errno, "sync " + path);
    close(fd);
    MUSCLE_RETURN_IF_ERROR(w);
  }
  std::string path = dir + "/bucket-manifest";
  std::string text;
  for (const ManifestEntry& e : entries)
    text += "U " + Hex(e.container) + " " + e.name + " " + std::to_string(e.size) + "\n";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create " + path);
  Status w = WriteAll(fd, text, path);
  if (w.ok() && fsync(fd) != 0) w = ErrnoStatus(errno, "sync " + path);
  close(fd);
  MUSCLE_RETURN_IF_ERROR(w);
  return SyncDir(dir);
}

Status BucketPackStore::PutIndex(uint64_t id, uint64_t size, const std::string& name, std::string_view body) {
  PackIndex index{id, size, {}};
  MUSCLE_RETURN_IF_ERROR(WalkRecords(
      [&](void* buf, size_t len, uint64_t at) {
        if (at > body.size() || len > body.size() - at) return EIO;
        memcpy(buf, body.data() + at, len);
        return 0;
      },
      size, "pack " + Hex(id), index.records));
  auto sealed = SealBucketObject(shared_->key.get(), shared_->store_id, kIndexPrefix + name, EncodePackIndex(index));
  if (!sealed.ok()) return sealed.status();
  return bucket_->Put(kIndexPrefix + name, *sealed);
}

Status BucketPackStore::WriteIndexOf(uint64_t id, uint64_t size, const std::string& name) {
  // From the cache when the pack is there, else from the bucket.
  std::string path = dir_ + "/" + Hex(id) + ".pack";
  std::string body(size, '\0');
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  bool local = fd >= 0 && vfs::FileRead(fd, body.data(), body.size(), 0) == 0;
  if (fd >= 0) close(fd);
  if (!local) {
    auto got = bucket_->Get(kPackPrefix + name);
    if (!got.ok()) return got.status();
    if (got->size() != size) return Status(EIO, "pack " + Hex(id) + " in the bucket has " + std::to_string(got->size()) +
                                                    " bytes, the manifest says " + std::to_string(size));
    body = std::move(*got);
  }
  return PutIndex(id, size, name, body);
}

void BucketPackStore::SetMasterKey(std::shared_ptr<const crypto::MasterKey> key) {
  if (read_only_) return;  // the writer's is shared (and read by its uploader)
  shared_->key = std::move(key);
}

void BucketPackStore::PublishCatalog(std::string text) {
  if (read_only_) return;
  MutexLock l(&shared_->mu);
  shared_->catalog = std::move(text);
  shared_->catalog_needs = cache_->mark().container;
  shared_->catalog_pending = true;
  ++shared_->catalog_gen;
  shared_->cv.SignalAll();
}

Status BucketPackStore::Drain(double seconds) {
  auto until = After(seconds);
  MutexLock l(&shared_->mu);
  while (!shared_->uploads.empty() || shared_->ReadyDelete() != shared_->deletes.end() || shared_->busy ||
         shared_->CatalogReady()) {
    if (!shared_->cv.WaitUntil(&shared_->mu, until) && std::chrono::steady_clock::now() >= until)
      return Status(ETIMEDOUT, std::to_string(shared_->uploads.size()) + " uploads and " +
                                   std::to_string(shared_->deletes.size()) + " deletes still pending for " +
                                   bucket_->Describe() +
                                   (shared_->stats.last_error.empty() ? "" : " (" + shared_->stats.last_error + ")"));
  }
  return Status::Ok();
}

std::vector<std::pair<std::string, std::string>> BucketPackStore::StatusFields() const {
  BucketStats s = stats();
  auto n = [](uint64_t v) { return std::to_string(v); };
  return {{"chunks", Location()},
          {"bucket", bucket_->Describe()},
          {"not-uploaded-bytes", n(s.pending_bytes + s.open_bytes)},
          {"not-uploaded-packs", n(s.pending_packs + (s.open_bytes ? 1 : 0))},
          {"uploaded-packs", n(s.uploaded_packs)},
          {"uploaded-bytes", n(s.uploaded_bytes)},
          {"cached-bytes", n(s.cached_bytes)},
          {"cache-limit", n(options_.cache_limit)},
          {"upload-failures", n(s.upload_failures)},
          {"bucket-reads", n(s.bucket_reads)},
          {"evictions", n(s.evictions)},
          {"last-error", s.last_error.empty() ? "-" : s.last_error}};
}

BucketStats BucketPackStore::stats() const {
  MutexLock l(&shared_->mu);
  BucketStats s = shared_->stats;
  s.pending_packs = 0;
  for (const Shared::Job& j : shared_->uploads) s.pending_packs += !j.index_only;
  s.uploaded_packs = shared_->uploaded.size();
  s.uploaded_bytes = 0;
  for (auto& [id, u] : shared_->uploaded) s.uploaded_bytes += u.size;
  return s;
}

}  // namespace muscle::store
