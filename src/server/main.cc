// musclefs: serve a content-addressed SQLite tree over 9P2000.L.
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>

#include "common/file_lock.h"
#include <uv.h>

#include <csignal>
#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <climits>
#include <cstdlib>
#include <memory>
#include <unistd.h>

#include "common/fs_util.h"
#include "common/log.h"
#include "common/progress.h"
#include "crypto/keys.h"
#include "server/chunk_backend.h"
#include "server/config.h"
#include "server/config_check.h"
#include "server/server.h"
#include "store/store.h"

using namespace muscle;

namespace {

// Where check, gc, upgrade --encrypt and restore-from report progress: a
// line redrawn on stderr (common/progress.h), or null when not wanted
// (--no-progress, or stderr not a terminal and no --progress), so that
// their output is then exactly what it was before progress existed.
std::unique_ptr<TerminalProgress> ProgressFor(const server::Config& c) {
  if (!ShowProgress(c.progress, STDERR_FILENO)) return nullptr;
  return std::make_unique<TerminalProgress>(stderr);
}

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
  auto key = server::LoadStoreKey(c.server.key);
  if (!key.ok()) {
    fprintf(stderr, "musclefs: %s\n", key.status().ToString().c_str());
    return 2;
  }
  auto shown = ProgressFor(c);
  auto s = store::Store::Open(c.server.store_path, std::move(*chunks), *key, shown.get());
  if (!s.ok()) {
    shown.reset();  // ends a line left open
    fprintf(stderr, "musclefs: %s\n", s.status().ToString().c_str());
    return 2;
  }
  (*s)->progress = shown.get();
  store::CheckReport r = (*s)->Check();
  (*s)->progress = nullptr;
  shown.reset();
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
// A new master key and its first key file at the key file in force
// (init --encrypt, upgrade --encrypt); null, with a message, on failure.
std::shared_ptr<const crypto::MasterKey> MakeKeyFile(const server::Config& c) {
  const std::string& key_path = c.server.key.Path();
  struct stat st;
  if (lstat(key_path.c_str(), &st) == 0) {
    fprintf(stderr, "musclefs: key file %s exists; a new key needs a new file (move it away, or "
                    "name another with --key-file)\n", key_path.c_str());
    return nullptr;
  }
  auto master = std::make_shared<crypto::MasterKey>(crypto::MasterKey::Generate());
  Status w;
  if (c.unattended) {
    w = crypto::WriteUnattendedKeyFile(key_path, *master);
  } else {
    auto pass = server::ReadPassphrase(c.server.key.passphrase_file, "the new key file " + key_path, true);
    if (!pass.ok()) {
      fprintf(stderr, "musclefs: %s\n", pass.status().message().c_str());
      return nullptr;
    }
    w = crypto::CreatePassphraseKeyFile(key_path, *master, *pass);
  }
  if (!w.ok()) {
    fprintf(stderr, "musclefs: key file %s: %s\n", key_path.c_str(), w.ToString().c_str());
    return nullptr;
  }
  return master;
}

void SayEncrypted(const server::Config& c, const crypto::MasterKey& key, const char* what) {
  printf("musclefs: store %s %s, encrypted at rest (key id %s); its key is in %s (%s).\n"
         "musclefs: lose every key file (or its passphrase) and the data is lost: keep a copy "
         "elsewhere (musclefs key add PATH)\n",
         c.server.store_path.c_str(), what, crypto::KeyIdOf(key).Hex().c_str(), c.server.key.Path().c_str(),
         c.unattended ? "unattended: anyone who can read it has the key" : "passphrase");
}

int Maintain(const server::Config& c) {
  struct stat st;
  if (stat(c.server.store_path.c_str(), &st) != 0) {
    fprintf(stderr, "musclefs: no store at %s (pass --store FILE or --base DIR)\n",
            c.server.store_path.c_str());
    return 2;
  }
  if (c.command == "upgrade" && c.encrypt) {
    if (!c.server.chunks.url.empty()) {
      fprintf(stderr, "musclefs: a store whose chunks are in a bucket cannot be converted: make an encrypted "
                      "one (musclefs init --encrypt) on a new base and prefix, and copy the files in\n");
      return 2;
    }
    // Opened plain (no key), then converted under a new key.
    auto chunks = server::OpenChunkBackend(c.server.chunks, c.server.store_path);
    if (!chunks.ok()) {
      fprintf(stderr, "musclefs: %s\n", chunks.status().ToString().c_str());
      return 2;
    }
    auto shown = ProgressFor(c);
    auto s = store::Store::Open(c.server.store_path, std::move(*chunks), nullptr, shown.get());
    if (!s.ok()) {
      shown.reset();  // ends a line left open
      fprintf(stderr, "musclefs: %s\n", s.status().ToString().c_str());
      return 2;
    }
    auto key = MakeKeyFile(c);
    if (!key) return 2;
    (*s)->progress = shown.get();
    Status conv = (*s)->ConvertToEncrypted(key);
    (*s)->progress = nullptr;
    shown.reset();  // a line left open ends before the messages below
    if (!conv.ok()) {
      fprintf(stderr, "musclefs: upgrade --encrypt: %s (the store is unchanged)\n", conv.ToString().c_str());
      unlink(c.server.key.Path().c_str());
      return 1;
    }
    SayEncrypted(c, *key, "converted");
    return 0;
  }
  auto chunks = server::OpenChunkBackend(c.server.chunks, c.server.store_path);
  if (!chunks.ok()) {
    fprintf(stderr, "musclefs: %s\n", chunks.status().ToString().c_str());
    return 2;
  }
  auto key = server::LoadStoreKey(c.server.key);
  if (!key.ok()) {
    fprintf(stderr, "musclefs: %s\n", key.status().ToString().c_str());
    return 2;
  }
  auto shown = ProgressFor(c);  // an older format is migrated by Open
  auto s = store::Store::Open(c.server.store_path, std::move(*chunks), *key, shown.get());
  if (!s.ok()) {
    shown.reset();  // ends a line left open
    fprintf(stderr, "musclefs: %s\n", s.status().ToString().c_str());
    return 2;
  }
  if (c.command == "upgrade") {
    printf("store %s: format %d\n", c.server.store_path.c_str(), store::kStoreFormat);
    return 0;
  }
  (*s)->progress = shown.get();
  auto r = (*s)->CollectGarbage(true);
  (*s)->progress = nullptr;
  shown.reset();
  if (!r.ok()) {
    fprintf(stderr, "musclefs: gc: %s\n", r.status().ToString().c_str());
    return 1;
  }
  printf("store %s: %llu packs compacted, %llu bytes copied, %llu bytes freed\n",
         c.server.store_path.c_str(), (unsigned long long)r->packs_removed,
         (unsigned long long)r->bytes_copied, (unsigned long long)r->bytes_freed);
  return 0;
}

// musclefs init: a new store, plain or (--encrypt) encrypted at rest under
// a new master key whose first key file is written here. Refuses a base
// that already has a store: encryption is chosen when a store is made.
int Init(const server::Config& c) {
  struct stat st;
  if (c.server.store_path == ":memory:" || stat(c.server.store_path.c_str(), &st) == 0) {
    fprintf(stderr, "musclefs: %s\n",
            c.server.store_path == ":memory:"
                ? "init makes a store file, not :memory:"
                : ("a store exists at " + c.server.store_path +
                   " (to encrypt it: musclefs upgrade --encrypt)").c_str());
    return 2;
  }
  std::string dir = c.server.store_path.substr(0, c.server.store_path.rfind('/'));
  if (!dir.empty() && dir != c.server.store_path) MakeDirs(dir, 0700);
  MakeDirs(c.base, 0700);
  std::shared_ptr<const crypto::MasterKey> key;
  const std::string& key_path = c.server.key.Path();
  if (!c.encrypt && lstat(key_path.c_str(), &st) == 0) {
    fprintf(stderr, "musclefs: a key file is at %s: serve would take this plain store for an encrypted "
                    "one; give --encrypt, or move the key file away\n", key_path.c_str());
    return 2;
  }
  if (c.encrypt) {
    key = MakeKeyFile(c);
    if (!key) return 2;
  }
  auto chunks = server::OpenChunkBackend(c.server.chunks, c.server.store_path);
  Status made = chunks.status();
  if (chunks.ok()) {
    auto s = store::Store::Open(c.server.store_path, std::move(*chunks), key);
    made = s.status();
  }
  if (!made.ok()) {
    fprintf(stderr, "musclefs: %s\n", made.ToString().c_str());
    if (key) unlink(key_path.c_str());  // a key of no store
    return 1;
  }
  if (key)
    SayEncrypted(c, *key, "made");
  else
    printf("musclefs: store %s made (not encrypted)\n", c.server.store_path.c_str());
  return 0;
}

// fsyncs the directory holding `path` (a rename in it is then durable).
void SyncDirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  fsync(fd);
  close(fd);
}

// Opens the store for a key command, with `key`; null (and a message) on failure.
std::unique_ptr<store::Store> OpenForKeys(const server::Config& c,
                                          std::shared_ptr<const crypto::MasterKey> key) {
  auto chunks = server::OpenChunkBackend(c.server.chunks, c.server.store_path);
  if (!chunks.ok()) {
    fprintf(stderr, "musclefs: %s\n", chunks.status().ToString().c_str());
    return nullptr;
  }
  auto s = store::Store::Open(c.server.store_path, std::move(*chunks), std::move(key));
  if (!s.ok()) {
    fprintf(stderr, "musclefs: %s\n", s.status().ToString().c_str());
    return nullptr;
  }
  if (!(*s)->keyring()) {
    fprintf(stderr, "musclefs: store %s is not encrypted: it has no keys\n", c.server.store_path.c_str());
    return nullptr;
  }
  return std::move(*s);
}

// musclefs key list: the keyring's generations and the packs of each.
int KeyList(const server::Config& c, std::shared_ptr<const crypto::MasterKey> key) {
  auto s = OpenForKeys(c, std::move(key));
  if (!s) return 2;
  auto packs = s->PacksPerGeneration();
  if (!packs.ok()) {
    fprintf(stderr, "musclefs: %s\n", packs.status().ToString().c_str());
    return 1;
  }
  auto ring = s->keyring();
  for (const auto& g : ring->generations()) {
    auto n = packs->find(g.number);
    printf("generation %u key %s from-pack %llu packs %llu%s\n", unsigned(g.number), g.id.Hex().c_str(),
           (unsigned long long)g.first, (unsigned long long)(n == packs->end() ? 0 : n->second),
           &g == &ring->current() ? " current" : !g.key ? " retired" : "");
  }
  return 0;
}

// musclefs key rewrite: every pack sealed under an older key generation
// rewritten under the current one; key retire N: generation N's key
// dropped from the keyring, refused while a live chunk needs it.
int KeyRewriteOrRetire(const server::Config& c, std::shared_ptr<const crypto::MasterKey> key) {
  auto s = OpenForKeys(c, std::move(key));
  if (!s) return 2;
  if (c.operands[0] == "rewrite") {
    auto r = s->RewriteOldKeys();
    if (!r.ok()) {
      fprintf(stderr, "musclefs: %s\n", r.status().ToString().c_str());
      return 1;
    }
    printf("musclefs: store %s: %llu packs rewritten under key generation %u (%llu bytes copied, %llu freed)\n",
           c.server.store_path.c_str(), (unsigned long long)r->packs_removed,
           unsigned(s->keyring()->current().number), (unsigned long long)r->bytes_copied,
           (unsigned long long)r->bytes_freed);
    return 0;
  }
  char* end = nullptr;
  unsigned long n = strtoul(c.operands[1].c_str(), &end, 10);
  if (c.operands[1].empty() || *end || n == 0 || n > UINT32_MAX) {
    fprintf(stderr, "musclefs: key retire takes a generation number (musclefs key list), not '%s'\n",
            c.operands[1].c_str());
    return 2;
  }
  Status r = s->RetireKey(uint32_t(n));
  if (!r.ok()) {
    fprintf(stderr, "musclefs: %s\n", r.ToString().c_str());
    return 1;
  }
  printf("musclefs: store %s: key generation %lu retired: its key is no longer in the keyring\n",
         c.server.store_path.c_str(), n);
  return 0;
}

// musclefs key rotate (server stopped): a new key for everything written
// from now on. Crash-safe in three steps (store.h BeginKeyRotation): the
// store records the new key as pending (it opens with the old key and the
// new one); the key file in force is replaced (a new file beside it,
// renamed over it) by one of the same kind holding the new key (a
// passphrase file asks the new file's passphrase, as key add does); the
// store opened with the new key completes the rotation. A crash before the
// rename leaves the old key file, which still opens the store; after it,
// the new one, whose first open completes the rotation.
int KeyRotate(const server::Config& c, std::shared_ptr<const crypto::MasterKey> key) {
  const std::string& path = c.server.key.Path();
  auto info = crypto::InspectKeyFileAt(path);
  if (!info.ok()) {
    fprintf(stderr, "musclefs: %s\n", info.status().ToString().c_str());
    return 2;
  }
  std::string old_id = crypto::KeyIdOf(*key).Hex();
  crypto::MasterKey next = crypto::MasterKey::Generate();
  std::string pass;  // the new file's (asked before anything changes)
  if (info->kind == crypto::KeyFileKind::kPassphrase) {
    auto p = server::ReadPassphrase(c.server.key.new_passphrase_file, "the rotated key file " + path, true);
    if (!p.ok()) {
      fprintf(stderr, "musclefs: %s\n", p.status().message().c_str());
      return 2;
    }
    pass = std::move(*p);
  }
  {
    auto s = OpenForKeys(c, key);
    if (!s) return 2;
    Status b = s->BeginKeyRotation(next);
    if (!b.ok()) {
      fprintf(stderr, "musclefs: %s\n", b.ToString().c_str());
      return 1;
    }
  }  // closed: its lock released
  std::string fresh = path + ".rotated";
  unlink(fresh.c_str());  // an interrupted rotation's: its key is pending no more
  Status w;
  if (info->kind == crypto::KeyFileKind::kUnattended) {
    w = crypto::WriteUnattendedKeyFile(fresh, next);
  } else {
    w = crypto::CreatePassphraseKeyFile(fresh, next, pass, info->kdf);
  }
  if (w.ok() && rename(fresh.c_str(), path.c_str()) != 0)
    w = Status(errno, "rename " + fresh + " to " + path + ": " + strerror(errno));
  if (!w.ok()) {
    unlink(fresh.c_str());
    fprintf(stderr, "musclefs: key file %s: %s (the store is unchanged: key %s still opens it)\n",
            path.c_str(), w.ToString().c_str(), old_id.c_str());
    return 1;
  }
  SyncDirOf(path);
  // From here on the key file holds the new key: opening completes.
  auto s = OpenForKeys(c, std::make_shared<const crypto::MasterKey>(next.Clone()));
  if (!s) {
    fprintf(stderr, "musclefs: %s now holds the new key %s; the rotation completes when the store "
                    "next opens with it\n", path.c_str(), crypto::KeyIdOf(next).Hex().c_str());
    return 1;
  }
  const auto& cur = s->keyring()->current();
  printf("musclefs: store %s: key rotated to generation %u (key id %s), in %s; new data is sealed "
         "under it from pack %llu on, older packs stay readable\n",
         c.server.store_path.c_str(), unsigned(cur.number), cur.id.Hex().c_str(), path.c_str(),
         (unsigned long long)cur.first);
  printf("musclefs: every other key file (key add) holds the old key %s and opens the store no more: "
         "remove them, and make new ones from %s (musclefs key add PATH)\n",
         old_id.c_str(), path.c_str());
  return 0;
}

// musclefs key add PATH: another key file for the key in force (unlocked
// first); key remove PATH: removes a key file holding the same key, once
// the key file in force (another file) has unlocked.
int KeyCommand(const server::Config& c) {
  const std::string& verb = c.operands[0];
  const std::string path = c.operands.size() > 1 ? c.operands[1] : "";
  struct stat st;
  if (c.server.key.key_file.empty() && lstat(c.server.key.Path().c_str(), &st) != 0) {
    fprintf(stderr, "musclefs: no key file %s (name one with --key-file)\n", c.server.key.Path().c_str());
    return 2;
  }
  auto key = server::LoadStoreKey(c.server.key);
  if (!key.ok() || !*key) {
    fprintf(stderr, "musclefs: %s\n", key.ok() ? "no key" : key.status().ToString().c_str());
    return 2;
  }
  std::string id = crypto::KeyIdOf(**key).Hex();
  if (verb == "list") return KeyList(c, *key);
  if (verb == "rotate") return KeyRotate(c, *key);
  if (verb == "rewrite" || verb == "retire") return KeyRewriteOrRetire(c, *key);
  if (verb == "add") {
    Status w;
    if (c.unattended) {
      w = crypto::WriteUnattendedKeyFile(path, **key);
    } else {
      auto pass = server::ReadPassphrase(c.server.key.new_passphrase_file, "the new key file " + path, true);
      if (!pass.ok()) {
        fprintf(stderr, "musclefs: %s\n", pass.status().message().c_str());
        return 2;
      }
      w = crypto::CreatePassphraseKeyFile(path, **key, *pass);
    }
    if (!w.ok()) {
      fprintf(stderr, "musclefs: key file %s: %s\n", path.c_str(), w.ToString().c_str());
      return 1;
    }
    printf("musclefs: %s now holds key %s too (%s)\n", path.c_str(), id.c_str(),
           c.unattended ? "unattended" : "passphrase");
    return 0;
  }
  char a[PATH_MAX], b[PATH_MAX];
  if (!realpath(path.c_str(), a)) {
    fprintf(stderr, "musclefs: key file %s: %s\n", path.c_str(), strerror(errno));
    return 2;
  }
  if (realpath(c.server.key.Path().c_str(), b) && strcmp(a, b) == 0) {
    fprintf(stderr, "musclefs: %s is the key file in force: unlock with another one "
                    "(--key-file OTHER) to remove it\n", path.c_str());
    return 2;
  }
  auto info = crypto::InspectKeyFileAt(path);
  if (!info.ok()) {
    fprintf(stderr, "musclefs: %s\n", info.status().ToString().c_str());
    return 2;
  }
  if (info->key_id.Hex() != id) {
    fprintf(stderr, "musclefs: %s holds key %s, not key %s: not removed\n", path.c_str(),
            info->key_id.Hex().c_str(), id.c_str());
    return 2;
  }
  if (unlink(path.c_str()) != 0) {
    fprintf(stderr, "musclefs: remove %s: %s\n", path.c_str(), strerror(errno));
    return 1;
  }
  printf("musclefs: removed %s; key %s stays in %s\n", path.c_str(), id.c_str(),
         c.server.key.Path().c_str());
  return 0;
}

// musclefs restore-from: a new store on this base rebuilt from the bucket
// (--chunks and the s3 settings) and, for an encrypted one, its key.
int RestoreFrom(const server::Config& c) {
  if (c.server.chunks.url.empty()) {
    fprintf(stderr, "musclefs: restore-from needs the bucket: --chunks s3://BUCKET[/PREFIX]\n");
    return 2;
  }
  struct stat st;
  if (stat(c.server.store_path.c_str(), &st) == 0) {
    fprintf(stderr, "musclefs: a store exists at %s: restore-from makes a new one (a new --base)\n",
            c.server.store_path.c_str());
    return 2;
  }
  auto key = server::LoadStoreKey(c.server.key);
  if (!key.ok()) {
    fprintf(stderr, "musclefs: %s\n", key.status().ToString().c_str());
    return 2;
  }
  auto bucket = server::OpenBucket(c.server.chunks, c.server.store_path);
  if (!bucket.ok()) {
    fprintf(stderr, "musclefs: %s\n", bucket.status().ToString().c_str());
    return 2;
  }
  std::string dir = c.server.store_path.substr(0, c.server.store_path.rfind('/'));
  if (!dir.empty() && dir != c.server.store_path) MakeDirs(dir, 0700);
  store::Store::RebuildReport report;
  auto shown = ProgressFor(c);
  auto s = store::Store::RebuildFromBucket(c.server.store_path, *bucket, server::CacheDirOf(c.server.store_path),
                                           server::BucketOptionsOf(c.server.chunks), *key, &report,
                                           shown.get());
  shown.reset();
  if (!s.ok()) {
    fprintf(stderr, "musclefs: restore-from %s: %s\n", c.server.chunks.url.c_str(), s.status().ToString().c_str());
    return 1;
  }
  auto snaps = (*s)->ListSnapshots();
  auto h = (*s)->TreeHash();
  printf("musclefs: store %s rebuilt from %s in %.1f s: %llu packs (%llu bytes), %llu snapshots%s%s\n",
         c.server.store_path.c_str(), c.server.chunks.url.c_str(), report.seconds,
         (unsigned long long)report.packs, (unsigned long long)report.bytes,
         (unsigned long long)report.snapshots,
         snaps.ok() && !snaps->empty() ? ("; the live tree is snapshot " + snaps->back().name).c_str() : "",
         (*s)->encrypted() ? "; encrypted" : "");
  if (h.ok()) printf("root hash %s\n", store::HexOf(*h).c_str());
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
  // The key first (a passphrase may be typed at the terminal).
  server::ServerOptions options = c.server;
  auto key = server::LoadStoreKey(c.server.key);
  if (!key.ok()) {
    fprintf(stderr, "musclefs: %s\n", key.status().ToString().c_str());
    return 1;
  }
  options.store_key = *key;
  uv_loop_t* loop = uv_default_loop();
  server::Server srv(loop);
  Status s = srv.Start(options);
  if (!s.ok()) {
    fprintf(stderr, "musclefs: %s\n", s.ToString().c_str());
    return 1;
  }
  Log("serving store %s", c.server.store_path.c_str());
  for (const auto& e : srv.bound()) Log("listening on %s", e.text.c_str());
  if (const auto* m = srv.metrics_bound()) Log("metrics on %s (GET /metrics)", m->text.c_str());
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
  if (c->command == "init") return Init(*c);
  if (c->command == "key") return KeyCommand(*c);
  if (c->command == "restore-from") return RestoreFrom(*c);
  return Serve(*c);
}
