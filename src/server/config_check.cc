#include "server/config_check.h"

#include "s3/s3_client.h"
#include "server/chunk_backend.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "auth/keys.h"
#include "crypto/keys.h"
#include "server/store_key.h"
#include "common/file_lock.h"
#include "transport/endpoint.h"

namespace muscle::server {

namespace {

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// A directory the server must create files in: it exists and is writable,
// or the nearest existing ancestor is (musclefs creates the rest).
void CheckWritableDir(const std::string& dir, const std::string& what, ConfigReport& r) {
  std::string d = dir;
  struct stat st;
  while (stat(d.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      r.problems.push_back(what + ": cannot reach " + d + ": " + strerror(errno));
      return;
    }
    if (d == "/" || d == ".") break;
    d = DirOf(d);
  }
  if (!S_ISDIR(st.st_mode)) {
    r.problems.push_back(what + ": " + d + " is not a directory");
    return;
  }
  if (access(d.c_str(), W_OK | X_OK) != 0)
    r.problems.push_back(what + ": " + d + " is not writable by uid " + std::to_string(geteuid()) +
                         " (" + strerror(errno) + ")");
  else if (d != dir && r.created.insert(dir).second)
    r.notes.push_back(dir + " does not exist yet; musclefs will create it");
}

}  // namespace

ConfigReport CheckConfig(const Config& c) {
  ConfigReport r;
  CheckWritableDir(c.base, "base", r);
  if (c.server.store_path == ":memory:") {
    r.notes.push_back("store: :memory: (an ephemeral tree, lost at exit)");
  } else {
    struct stat st;
    if (stat(c.server.store_path.c_str(), &st) == 0)
      r.notes.push_back("store: " + c.server.store_path);
    else
      r.notes.push_back("store: " + c.server.store_path + " (new: created at start)");
    CheckWritableDir(DirOf(c.server.store_path), "store", r);
  }
  if (!c.server.chunks.url.empty()) {
    // Settings and credentials only: nothing is sent to the bucket.
    Status ok = CheckChunkOptions(c.server.chunks, c.server.store_path);
    if (ok.ok()) {
      auto creds = s3::LoadCredentials(c.server.chunks.credentials);
      if (!creds.ok()) ok = creds.status();
    }
    if (ok.ok())
      r.notes.push_back("chunks: " + c.server.chunks.url + " at " +
                        (c.server.chunks.endpoint.empty() ? "AWS" : c.server.chunks.endpoint) +
                        " (not contacted by this check)");
    else
      r.problems.push_back("chunks: " + ok.message());
  }
  {
    // The key of an encrypted store: the file parses, and it unlocks (a
    // passphrase file, or a terminal at start: a service has none).
    struct stat ks;
    const std::string& kf = c.server.key.Path();
    if (!c.server.key.key_file.empty() || lstat(kf.c_str(), &ks) == 0) {
      auto info = crypto::InspectKeyFileAt(kf);
      if (!info.ok()) {
        r.problems.push_back("key-file: " + info.status().message());
      } else if (info->kind == crypto::KeyFileKind::kPassphrase && c.server.key.passphrase_file.empty() &&
                 !isatty(0)) {
        r.problems.push_back("key-file: " + kf +
                             " needs a passphrase and there is no terminal: set passphrase-file "
                             "(mode 0600), or use an unattended key file (musclefs key add PATH --unattended)");
      } else {
        auto key = c.server.key.passphrase_file.empty() && info->kind == crypto::KeyFileKind::kPassphrase
                       ? Result<std::shared_ptr<const crypto::MasterKey>>(std::shared_ptr<const crypto::MasterKey>())
                       : LoadStoreKey(c.server.key);
        if (!key.ok())
          r.problems.push_back("key-file: " + key.status().message());
        else
          r.notes.push_back("encryption: key " + info->key_id.Hex() + " from " + kf +
                            (*key ? " (unlocked)" : " (passphrase asked at start)"));
      }
    }
  }
  bool tls = false;
  std::vector<transport::Endpoint> eps;
  for (const std::string& text : c.server.listen) {
    auto ep = transport::ParseEndpoint(text);
    if (!ep.ok()) {
      r.problems.push_back("listen " + text + ": " + ep.status().message());
      continue;
    }
    tls |= ep->tls;
    if (ep->kind == transport::Endpoint::kTcp && !ep->tls && !ep->IsLoopback() &&
        !c.server.allow_plaintext_network)
      r.problems.push_back("listen " + text +
                           ": plain 9P on a network address is refused (listen on 127.0.0.1, "
                           "a unix socket or tls://, or set allow-plaintext-network)");
    if (ep->kind == transport::Endpoint::kUnix)
      CheckWritableDir(DirOf(ep->path), "listen " + text, r);
    r.notes.push_back("listen: " + text);
    eps.push_back(*ep);
  }
  for (const auto& w : ListenerWarnings(eps)) r.notes.push_back("WARNING: " + w);

  std::shared_ptr<const auth::KeyTable> keys;
  struct stat st;
  bool keys_exist = stat(c.server.keys_path.c_str(), &st) == 0;
  if (tls || keys_exist) {
    auto t = auth::KeyTable::Load(c.server.keys_path);
    if (!t.ok()) {
      r.problems.push_back("keys: " + t.status().message());
    } else {
      keys = *t;
      if (tls && keys->size() == 0)
        r.problems.push_back("keys: " + c.server.keys_path +
                             " has no identities; add one with: muscle keys add NAME");
      else
        r.notes.push_back("keys: " + c.server.keys_path + ", " + std::to_string(keys->size()) +
                          " identities");
    }
  } else {
    r.notes.push_back("keys: none (no tls:// listener)");
  }
  for (const auto& [name, rule] : c.server.access) {
    const auth::OwnerRule& o = rule.owner;
    std::string text = "access: " + name + " root=" + (rule.root.empty() ? "/" : rule.root) +
                       (rule.read_only ? " read-only" : "") + (rule.snapshot ? " snapshot" : "") +
                       (o.uid ? " uid=" + std::to_string(*o.uid) : "") +
                       (o.gid ? " gid=" + std::to_string(*o.gid) : "") +
                       (o.squash_root ? " root-squash" : " no-root-squash") +
                       (o.setid ? " setid" : "") + (o.devices ? " devices" : "");
    if (keys && !keys->Find(name)) text += " (no key: an SSH identity for muscle stdio only)";
    r.notes.push_back(text);
  }
  pid_t holder = FileLock::PidFileHolder(c.base + "/musclefs.pid");
  if (holder > 0)
    r.notes.push_back("a musclefs (pid " + std::to_string(holder) +
                      ") is serving this base now; `systemctl reload` or SIGHUP re-reads its keys");
  return r;
}

}  // namespace muscle::server
