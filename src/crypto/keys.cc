#include "crypto/keys.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common/fs_util.h"
#include "crypto/seal.h"
#include "crypto/text.h"

namespace muscle::crypto {
namespace {

constexpr size_t kSaltBytes = crypto_pwhash_argon2id_SALTBYTES;  // 16
constexpr size_t kMaxKeyFile = 4096;
constexpr std::string_view kMagic = "musclefs key file ";
constexpr std::string_view kVersion = "1";
constexpr uint64_t kMinOps = 1, kMaxOps = 0xffffffffu;
constexpr uint64_t kMinMem = 8192, kMaxMem = uint64_t(4) << 30;

void InitSodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) abort();  // only when the OS has no random source at all
}

// Wipes a string (a key file's text) when the scope ends.
struct WipeOnExit {
  std::string& s;
  ~WipeOnExit() { sodium_memzero(s.data(), s.size()); }
};

Status CheckParams(const KdfParams& p) {
  if (p.opslimit < kMinOps || p.opslimit > kMaxOps)
    return Status(EINVAL, "Argon2id opslimit " + std::to_string(p.opslimit) +
                              " is out of range (1 to 4294967295)");
  if (p.memlimit < kMinMem || p.memlimit > kMaxMem)
    return Status(EINVAL, "Argon2id memlimit " + std::to_string(p.memlimit) +
                              " is out of range (8192 to 4 GiB)");
  return Status::Ok();
}

// The key-encryption key of a passphrase file.
Result<Key> PassphraseKey(std::string_view passphrase, const unsigned char* salt,
                          const KdfParams& p) {
  InitSodium();
  if (passphrase.empty()) return Status(EINVAL, "the passphrase is empty");
  MUSCLE_RETURN_IF_ERROR(CheckParams(p));
  unsigned char k[kKeyBytes];
  if (crypto_pwhash(k, sizeof k, passphrase.data(), passphrase.size(), salt, p.opslimit,
                    size_t(p.memlimit), crypto_pwhash_ALG_ARGON2ID13) != 0)
    return Status(ENOMEM, "Argon2id could not get " + std::to_string(p.memlimit >> 20) +
                              " MiB of memory");
  auto key = Key::FromBytes(std::string_view(reinterpret_cast<char*>(k), sizeof k));
  sodium_memzero(k, sizeof k);
  return key;
}

// A key file split into its fields (not secret except `key`).
struct Parsed {
  KeyFileKind kind = KeyFileKind::kPassphrase;
  KeyId key_id;
  KdfParams kdf;
  unsigned char salt[kSaltBytes] = {};
  unsigned char sealed[kNonceBytes + kKeyBytes + kTagBytes] = {};
  unsigned char key[kKeyBytes] = {};  // unattended only
  size_t header_len = 0;              // bytes before the "sealed" line
  ~Parsed() { sodium_memzero(key, sizeof key); }
};

Status Malformed(const std::string& what) {
  return Status(EINVAL, "not a musclefs key file: " + what);
}

Status Parse(std::string_view text, Parsed* out) {
  if (text.size() > kMaxKeyFile) return Malformed("too large");
  std::string_view lines[7];
  size_t n = 0, pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) return Malformed("the last line has no newline");
    if (n == 7) return Malformed("too many lines");
    lines[n++] = text.substr(pos, eol - pos);
    pos = eol + 1;
  }
  if (n == 0 || lines[0].substr(0, kMagic.size()) != kMagic) return Malformed("no magic line");
  if (lines[0].substr(kMagic.size()) != kVersion)
    return Status(EINVAL, "key file version " + std::string(lines[0].substr(kMagic.size())) +
                              " is not supported (this musclefs reads version 1)");
  auto field = [&](size_t i, std::string_view name, std::string_view* value) {
    if (i >= n || lines[i].substr(0, name.size() + 1) != std::string(name) + " ") return false;
    *value = lines[i].substr(name.size() + 1);
    return true;
  };
  std::string_view v;
  if (!field(1, "kind", &v)) return Malformed("no kind line");
  if (v == "passphrase") {
    out->kind = KeyFileKind::kPassphrase;
    if (n != 6) return Malformed("a passphrase key file has 6 lines");
  } else if (v == "unattended") {
    out->kind = KeyFileKind::kUnattended;
    if (n != 4) return Malformed("an unattended key file has 4 lines");
  } else {
    return Malformed("unknown kind");
  }
  if (!field(2, "key-id", &v) || !FromHex(v, out->key_id.bytes)) return Malformed("bad key-id line");
  if (out->kind == KeyFileKind::kUnattended) {
    if (!field(3, "key", &v) || !FromHex(v, out->key)) return Malformed("bad key line");
    return Status::Ok();
  }
  if (!field(3, "kdf", &v) || v.substr(0, 11) != "argon2id13 ") return Malformed("bad kdf line");
  v.remove_prefix(11);
  size_t sp = v.find(' ');
  if (sp == std::string_view::npos || !ParseNumber(v.substr(0, sp), &out->kdf.opslimit) ||
      !ParseNumber(v.substr(sp + 1), &out->kdf.memlimit))
    return Malformed("bad kdf line");
  MUSCLE_RETURN_IF_ERROR(CheckParams(out->kdf));
  if (!field(4, "salt", &v) || !FromHex(v, out->salt)) return Malformed("bad salt line");
  if (!field(5, "sealed", &v) || !FromHex(v, out->sealed)) return Malformed("bad sealed line");
  out->header_len = size_t(lines[5].data() - text.data());
  return Status::Ok();
}

std::string Header(KeyFileKind kind, const KeyId& id) {
  return std::string(kMagic) + std::string(kVersion) + "\nkind " +
         (kind == KeyFileKind::kPassphrase ? "passphrase" : "unattended") + "\nkey-id " +
         id.Hex() + "\n";
}

Status WithPath(const std::string& path, const Status& s) {
  return s.ok() ? s : Status(s.err(), path + ": " + s.message());
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void SyncDir(const std::string& path) {
  int fd = open(DirOf(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  fsync(fd);
  close(fd);
}

// Creates `path` with `text`, mode 0600, whole or not at all, never over
// an existing file: a temporary file in the same directory, fsync, link.
Status CreateFile(const std::string& path, std::string_view text) {
  InitSodium();
  std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." +
                    std::to_string(randombytes_random());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status(errno, "cannot create " + tmp + ": " + strerror(errno));
  bool ok = fchmod(fd, 0600) == 0;  // whatever the umask
  for (size_t done = 0; ok && done < text.size();) {
    ssize_t w = write(fd, text.data() + done, text.size() - done);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) done += size_t(w);
  }
  ok = ok && fsync(fd) == 0;
  int e = errno;
  close(fd);
  if (!ok) {
    unlink(tmp.c_str());
    return Status(e ? e : EIO, "cannot write " + tmp + ": " + strerror(e ? e : EIO));
  }
  if (link(tmp.c_str(), path.c_str()) != 0) {
    e = errno;
    unlink(tmp.c_str());
    if (e == EEXIST) return Status(EEXIST, path + " exists (a key file is never overwritten)");
    return Status(e, "cannot create " + path + ": " + strerror(e));
  }
  unlink(tmp.c_str());
  SyncDir(path);
  return Status::Ok();
}

// A key file's text: a regular file (a FIFO is refused without blocking),
// at most kMaxKeyFile bytes. Passphrase files are not secret by themselves,
// so their owner and mode are not checked.
Result<std::string> ReadKeyFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Status(errno, "cannot read key file " + path + ": " + strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Status(EINVAL, "key file " + path + " is not a regular file");
  }
  std::string text(kMaxKeyFile + 1, '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t r = read(fd, text.data() + got, text.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      sodium_memzero(text.data(), text.size());
      return Status(e, "cannot read key file " + path + ": " + strerror(e));
    }
    if (r == 0) break;
    got += size_t(r);
  }
  close(fd);
  text.resize(got);  // shrinking keeps the buffer: no stray copy
  return text;
}

}  // namespace

Key::Key(const unsigned char* bytes) { memcpy(bytes_, bytes, kKeyBytes); }

Key::Key(Key&& other) noexcept {
  memcpy(bytes_, other.bytes_, kKeyBytes);
  sodium_memzero(other.bytes_, kKeyBytes);
}

Key& Key::operator=(Key&& other) noexcept {
  if (this != &other) {
    memcpy(bytes_, other.bytes_, kKeyBytes);
    sodium_memzero(other.bytes_, kKeyBytes);
  }
  return *this;
}

Key::~Key() { sodium_memzero(bytes_, kKeyBytes); }

Result<Key> Key::FromBytes(std::string_view bytes) {
  if (bytes.size() != kKeyBytes)
    return Status(EINVAL, "a key is 32 bytes, not " + std::to_string(bytes.size()));
  return Key(reinterpret_cast<const unsigned char*>(bytes.data()));
}

std::string KeyId::Hex() const { return crypto::Hex(bytes.data(), bytes.size()); }

MasterKey MasterKey::Generate() {
  InitSodium();
  unsigned char b[kKeyBytes];
  randombytes_buf(b, sizeof b);
  MasterKey m(b);
  sodium_memzero(b, sizeof b);
  return m;
}

Result<MasterKey> MasterKey::FromBytes(std::string_view bytes) {
  if (bytes.size() != kKeyBytes)
    return Status(EINVAL, "a master key is 32 bytes, not " + std::to_string(bytes.size()));
  return MasterKey(reinterpret_cast<const unsigned char*>(bytes.data()));
}

void Derive(const MasterKey& master, std::string_view label, std::string_view context,
            std::span<unsigned char> out) {
  constexpr size_t kBlock = crypto_auth_hmacsha256_BYTES;  // 32
  if (out.empty() || out.size() > 255 * kBlock || label.find('\0') != std::string_view::npos)
    abort();  // a programming error, as libsodium's misuse is
  static constexpr unsigned char kPrefix[] = "musclefs-kdf-v1";  // with its NUL
  const unsigned char zero = 0;
  unsigned char t[kBlock];
  crypto_auth_hmacsha256_state st;
  for (size_t done = 0, i = 1; done < out.size(); i++) {
    // T(i) = HMAC(PRK, T(i-1) || info || i), RFC 5869 section 2.3.
    crypto_auth_hmacsha256_init(&st, master.bytes().data(), kKeyBytes);
    if (i > 1) crypto_auth_hmacsha256_update(&st, t, kBlock);
    crypto_auth_hmacsha256_update(&st, kPrefix, sizeof kPrefix);
    crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(label.data()),
                                  label.size());
    crypto_auth_hmacsha256_update(&st, &zero, 1);
    if (!context.empty())
      crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(context.data()),
                                    context.size());
    const unsigned char counter = static_cast<unsigned char>(i);
    crypto_auth_hmacsha256_update(&st, &counter, 1);
    crypto_auth_hmacsha256_final(&st, t);
    size_t n = std::min(kBlock, out.size() - done);
    memcpy(out.data() + done, t, n);
    done += n;
  }
  sodium_memzero(t, sizeof t);
  sodium_memzero(&st, sizeof st);
}

namespace {
Key DeriveKey(const MasterKey& master, std::string_view label, std::string_view context) {
  unsigned char k[kKeyBytes];
  Derive(master, label, context, k);
  auto key = Key::FromBytes(std::string_view(reinterpret_cast<char*>(k), sizeof k));
  sodium_memzero(k, sizeof k);
  return std::move(*key);
}
}  // namespace

KeyId KeyIdOf(const MasterKey& master) {
  KeyId id;
  Derive(master, "key-id", {}, id.bytes);
  return id;
}

Key ChunkIdKey(const MasterKey& master) { return DeriveKey(master, "chunk-id", {}); }

Key PackKey(const MasterKey& master, std::string_view pack_id) {
  return DeriveKey(master, "pack", pack_id);
}

Key IndexKey(const MasterKey& master) { return DeriveKey(master, "index", {}); }

Key KeyringKey(const MasterKey& master) { return DeriveKey(master, "keyring", {}); }

GearTable DeriveGearTable(const MasterKey& master) {
  unsigned char b[256 * 8];
  Derive(master, "gear", {}, b);
  GearTable g;
  for (size_t i = 0; i < g.size(); i++) {
    uint64_t v = 0;
    for (int j = 7; j >= 0; j--) v = v << 8 | b[8 * i + size_t(j)];
    g[i] = v;
  }
  sodium_memzero(b, sizeof b);
  return g;
}

Result<std::string> MakePassphraseKeyFile(const MasterKey& master, std::string_view passphrase,
                                          const KdfParams& params) {
  InitSodium();
  unsigned char salt[kSaltBytes];
  randombytes_buf(salt, sizeof salt);
  auto kek = PassphraseKey(passphrase, salt, params);
  if (!kek.ok()) return kek.status();
  std::string text = Header(KeyFileKind::kPassphrase, KeyIdOf(master)) + "kdf argon2id13 " +
                     std::to_string(params.opslimit) + " " + std::to_string(params.memlimit) +
                     "\nsalt " + Hex(salt, sizeof salt) + "\n";
  auto ad = AssociatedData::ForKeyFile(text);
  if (!ad.ok()) return ad.status();
  unsigned char sealed[kNonceBytes + kKeyBytes + kTagBytes];
  std::string_view plain(reinterpret_cast<const char*>(master.bytes().data()), kKeyBytes);
  MUSCLE_RETURN_IF_ERROR(Seal(*kek, *ad, plain, std::span(reinterpret_cast<char*>(sealed), sizeof sealed)));
  text += "sealed " + Hex(sealed, sizeof sealed) + "\n";
  return text;
}

Result<MasterKey> UnlockPassphraseKeyFile(std::string_view text, std::string_view passphrase) {
  Parsed p;
  MUSCLE_RETURN_IF_ERROR(Parse(text, &p));
  if (p.kind != KeyFileKind::kPassphrase)
    return Status(EINVAL, "an unattended key file needs no passphrase");
  auto kek = PassphraseKey(passphrase, p.salt, p.kdf);
  if (!kek.ok()) return kek.status();
  auto ad = AssociatedData::ForKeyFile(text.substr(0, p.header_len));
  if (!ad.ok()) return ad.status();
  unsigned char k[kKeyBytes];
  Status s = Open(*kek, *ad, std::string_view(reinterpret_cast<char*>(p.sealed), sizeof p.sealed),
                  std::span(reinterpret_cast<char*>(k), sizeof k));
  if (s.err() == EIO) return Status(EACCES, "wrong passphrase (or the key file was altered)");
  if (!s.ok()) return s;
  auto master = MasterKey::FromBytes(std::string_view(reinterpret_cast<char*>(k), sizeof k));
  sodium_memzero(k, sizeof k);
  if (!(KeyIdOf(*master) == p.key_id))
    return Status(EINVAL, "the key file's key-id does not match the key it holds");
  return master;
}

Result<KeyFileInfo> InspectKeyFile(std::string_view text) {
  Parsed p;
  MUSCLE_RETURN_IF_ERROR(Parse(text, &p));
  KeyFileInfo info;
  info.kind = p.kind;
  info.key_id = p.key_id;
  if (p.kind == KeyFileKind::kPassphrase) info.kdf = p.kdf;
  return info;
}

Status CreatePassphraseKeyFile(const std::string& path, const MasterKey& master,
                               std::string_view passphrase, const KdfParams& params) {
  auto text = MakePassphraseKeyFile(master, passphrase, params);
  if (!text.ok()) return WithPath(path, text.status());
  return CreateFile(path, *text);
}

Result<MasterKey> UnlockKeyFile(const std::string& path, std::string_view passphrase) {
  auto text = ReadKeyFile(path);
  if (!text.ok()) return text.status();
  auto master = UnlockPassphraseKeyFile(*text, passphrase);
  if (!master.ok()) return WithPath(path, master.status());
  return master;
}

Result<KeyFileInfo> InspectKeyFileAt(const std::string& path) {
  auto text = ReadKeyFile(path);
  if (!text.ok()) return text.status();
  WipeOnExit wipe{*text};  // an unattended file holds the key
  auto info = InspectKeyFile(*text);
  if (!info.ok()) return WithPath(path, info.status());
  return info;
}

Status AddPassphrase(const std::string& existing, std::string_view passphrase,
                     const std::string& path, std::string_view new_passphrase,
                     const KdfParams& params) {
  auto master = UnlockKeyFile(existing, passphrase);
  if (!master.ok()) return master.status();
  return CreatePassphraseKeyFile(path, *master, new_passphrase, params);
}

Status RemovePassphrase(const std::string& path, const std::string& keep,
                        std::string_view keep_passphrase) {
  struct stat a, b;
  if (stat(path.c_str(), &a) != 0) return Status(errno, "cannot stat " + path);
  if (stat(keep.c_str(), &b) != 0) return Status(errno, "cannot stat " + keep);
  if (a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    return Status(EINVAL, keep + " is the key file to remove; name another one to keep");
  auto info = InspectKeyFileAt(path);
  if (!info.ok()) return info.status();
  auto master = UnlockKeyFile(keep, keep_passphrase);
  if (!master.ok()) return master.status();
  if (!(KeyIdOf(*master) == info->key_id))
    return Status(EINVAL, keep + " holds another master key (key id " + KeyIdOf(*master).Hex() +
                              ") than " + path + " (" + info->key_id.Hex() + "); not removed");
  if (unlink(path.c_str()) != 0) return Status(errno, "cannot remove " + path);
  SyncDir(path);
  return Status::Ok();
}

Status WriteUnattendedKeyFile(const std::string& path, const MasterKey& master) {
  std::string text;
  text.reserve(256);  // no reallocation: no stray copy of the key
  WipeOnExit wipe{text};
  text += Header(KeyFileKind::kUnattended, KeyIdOf(master));
  text += "key ";
  AppendHex(text, master.bytes().data(), kKeyBytes);  // in place: no temporary copy
  text += "\n";
  return CreateFile(path, text);
}

Result<MasterKey> LoadUnattendedKeyFile(const std::string& path) {
  auto text = ReadOwnerOnlyFile(path, "unattended key file", kMaxKeyFile);
  if (!text.ok()) return text.status();
  WipeOnExit wipe{*text};
  Parsed p;
  Status s = Parse(*text, &p);
  if (!s.ok()) return WithPath(path, s);
  if (p.kind != KeyFileKind::kUnattended)
    return Status(EINVAL, path + " is a passphrase key file, not an unattended one");
  auto master = MasterKey::FromBytes(std::string_view(reinterpret_cast<char*>(p.key), kKeyBytes));
  if (!(KeyIdOf(*master) == p.key_id))
    return Status(EINVAL, path + ": the key does not match its key-id (the file is damaged)");
  return master;
}

}  // namespace muscle::crypto
