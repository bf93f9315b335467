#include "crypto/keyring.h"

#include <sodium.h>

#include <cerrno>
#include <cstring>

#include "crypto/seal.h"
#include "crypto/text.h"

namespace muscle::crypto {
namespace {

constexpr std::string_view kMagic = "musclefs keyring 1";
constexpr std::string_view kSealedMagic = "musclefs keyring 1 ";
constexpr size_t kMaxText = 1 << 20;

struct Wiped {
  std::string s;
  ~Wiped() {
    if (!s.empty()) sodium_memzero(s.data(), s.size());
  }
};

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t at = 0;
  while (true) {
    size_t e = s.find(sep, at);
    if (e == std::string_view::npos) {
      out.push_back(s.substr(at));
      return out;
    }
    out.push_back(s.substr(at, e - at));
    at = e + 1;
  }
}

Status Bad(const std::string& what) { return Status(EINVAL, "malformed keyring: " + what); }

Result<AssociatedData> KeyringAd(std::string_view store_id, uint32_t generation) {
  return AssociatedData::ForRecord(SealKind::kKeyring, store_id.substr(0, AssociatedData::kMaxField),
                                   "keyring", generation);
}

struct Header {
  KeyId id;
  uint32_t generation = 0;
};

// "musclefs keyring 1 <key id> <generation>\n" of a sealed keyring.
Result<Header> ParseHeader(std::string_view sealed) {
  if (sealed.substr(0, kSealedMagic.size()) != kSealedMagic) return Bad("no header");
  size_t nl = sealed.find('\n');
  if (nl == std::string_view::npos) return Bad("no header");
  auto w = Split(sealed.substr(kSealedMagic.size(), nl - kSealedMagic.size()), ' ');
  Header h;
  uint64_t g = 0;
  if (w.size() != 2 || !FromHex(w[0], {h.id.bytes.data(), kKeyIdBytes}) || !ParseNumber(w[1], &g) || g == 0 ||
      g > UINT32_MAX)
    return Bad("bad header");
  h.generation = uint32_t(g);
  return h;
}

}  // namespace

Keyring Keyring::First(const MasterKey& master) {
  Keyring r;
  r.chunk_id_.emplace(ChunkIdKey(master));
  r.gear_ = DeriveGearTable(master);
  Generation g;
  g.number = 1;
  g.first = 0;
  g.id = KeyIdOf(master);
  g.key.emplace(master.Clone());
  r.gens_.push_back(std::move(g));
  return r;
}

Keyring Keyring::Clone() const {
  Keyring r;
  r.chunk_id_.emplace(chunk_id_->Clone());
  r.gear_ = gear_;
  for (const Generation& g : gens_) {
    Generation c;
    c.number = g.number;
    c.first = g.first;
    c.id = g.id;
    if (g.key) c.key.emplace(g.key->Clone());
    r.gens_.push_back(std::move(c));
  }
  return r;
}

Result<Keyring> Keyring::Rotated(const MasterKey& key, uint64_t first) const {
  if (first < current().first)
    return Status(EINVAL, "a new key generation cannot start before the current one (container " +
                              std::to_string(current().first) + ")");
  if (Find(KeyIdOf(key))) return Status(EINVAL, "the keyring has that key already");
  Keyring r = Clone();
  Generation g;
  g.number = current().number + 1;
  g.first = first;
  g.id = KeyIdOf(key);
  g.key.emplace(key.Clone());
  r.gens_.push_back(std::move(g));
  return r;
}

Result<Keyring> Keyring::WithCurrentFirst(uint64_t first) const {
  if (gens_.size() > 1 && first < gens_[gens_.size() - 2].first)
    return Status(EINVAL, "a key generation cannot start before the one before it");
  if (gens_.size() == 1 && first != 0) return Status(EINVAL, "generation 1 starts at container 0");
  Keyring r = Clone();
  r.gens_.back().first = first;
  return r;
}

Result<Keyring> Keyring::Retired(uint32_t number) const {
  if (number == current().number)
    return Status(EINVAL, "generation " + std::to_string(number) +
                              " is the current key: rotate first (musclefs key rotate)");
  if (number == 0 || number > current().number)
    return Status(EINVAL, "the keyring has no generation " + std::to_string(number));
  Keyring r = Clone();
  r.gens_[number - 1].key.reset();
  return r;
}

const Keyring::Generation& Keyring::ForContainer(uint64_t container) const {
  for (size_t i = gens_.size(); i-- > 1;)
    if (container >= gens_[i].first) return gens_[i];
  return gens_[0];
}

const Keyring::Generation* Keyring::Find(const KeyId& id) const {
  for (const Generation& g : gens_)
    if (g.id == id) return &g;
  return nullptr;
}

uint64_t Keyring::EndOf(uint32_t number) const {
  return number >= current().number ? UINT64_MAX : gens_[number].first;  // gens_[n] is n + 1
}

Result<std::string> Keyring::Seal(std::string_view store_id) const {
  Wiped text;
  text.s.reserve(8192 + gens_.size() * 160);  // no reallocation: no stray copy
  text.s += kMagic;
  text.s += "\nchunk-id ";
  AppendHex(text.s, chunk_id_->bytes().data(), kKeyBytes);
  text.s += "\ngear ";
  for (uint64_t v : gear_) {
    unsigned char b[8];
    for (int j = 0; j < 8; j++) b[j] = static_cast<unsigned char>(v >> (8 * j));
    AppendHex(text.s, b, 8);
  }
  text.s += "\n";
  for (const Generation& g : gens_) {
    text.s += g.key ? "key " : "retired ";
    text.s += std::to_string(g.number) + " " + std::to_string(g.first) + " " + g.id.Hex();
    if (g.key) {
      text.s += " ";
      AppendHex(text.s, g.key->bytes().data(), kKeyBytes);
    }
    text.s += "\n";
  }
  auto ad = KeyringAd(store_id, current().number);
  if (!ad.ok()) return ad.status();
  std::string head = std::string(kSealedMagic) + current().id.Hex() + " " +
                     std::to_string(current().number) + "\n";
  std::string out(head.size() + text.s.size() + kSealOverhead, '\0');
  memcpy(out.data(), head.data(), head.size());
  Key k = KeyringKey(*current().key);
  MUSCLE_RETURN_IF_ERROR(crypto::Seal(k, *ad, text.s,
                                      std::span<char>(out.data() + head.size(), out.size() - head.size())));
  return out;
}

Result<KeyId> Keyring::SealedUnder(std::string_view sealed) {
  auto h = ParseHeader(sealed);
  if (!h.ok()) return h.status();
  return h->id;
}

Result<Keyring> Keyring::Open(std::string_view sealed, const MasterKey& key, std::string_view store_id) {
  auto head = ParseHeader(sealed);
  if (!head.ok()) return head.status();
  const Header& under = *head;
  KeyId have = KeyIdOf(key);
  if (!(under.id == have))
    return Status(EACCES, "the keyring is sealed under key " + under.id.Hex() + ", not under the key given (" +
                              have.Hex() + ")");
  std::string_view blob = sealed.substr(sealed.find('\n') + 1);
  if (blob.size() < kSealOverhead || blob.size() - kSealOverhead > kMaxText)
    return Status(EIO, "the keyring is truncated");
  Wiped text;
  text.s.resize(blob.size() - kSealOverhead);
  uint32_t generation = under.generation;
  auto ad = KeyringAd(store_id, generation);
  if (!ad.ok()) return ad.status();
  if (!crypto::Open(KeyringKey(key), *ad, blob, text.s).ok())
    return Status(EIO, "the keyring fails authentication (altered, or another store's)");
  auto lines = Split(text.s, '\n');
  if (lines.size() < 5 || !lines.back().empty() || lines[0] != kMagic) return Bad("header");
  lines.pop_back();
  Keyring r;
  unsigned char b[kKeyBytes];
  if (lines[1].substr(0, 9) != "chunk-id " || !FromHex(lines[1].substr(9), {b, kKeyBytes}))
    return Bad("chunk-id line");
  r.chunk_id_.emplace(std::move(*Key::FromBytes(std::string_view(reinterpret_cast<char*>(b), kKeyBytes))));
  sodium_memzero(b, sizeof b);
  unsigned char gear[256 * 8];
  if (lines[2].substr(0, 5) != "gear " || !FromHex(lines[2].substr(5), {gear, sizeof gear}))
    return Bad("gear line");
  for (size_t i = 0; i < r.gear_.size(); i++) {
    uint64_t v = 0;
    for (int j = 7; j >= 0; j--) v = v << 8 | gear[8 * i + size_t(j)];
    r.gear_[i] = v;
  }
  sodium_memzero(gear, sizeof gear);
  for (size_t i = 3; i < lines.size(); i++) {
    auto w = Split(lines[i], ' ');
    Generation g;
    uint64_t number = 0;
    bool has_key = w[0] == "key";
    if (!(has_key ? w.size() == 5 : (w[0] == "retired" && w.size() == 4)) || !ParseNumber(w[1], &number) ||
        number != i - 2 || !ParseNumber(w[2], &g.first) ||
        !FromHex(w[3], {g.id.bytes.data(), kKeyIdBytes}))
      return Bad("line " + std::to_string(i + 1));
    g.number = uint32_t(number);
    if (!r.gens_.empty() && g.first < r.gens_.back().first) return Bad("generations out of order");
    if (r.gens_.empty() && g.first != 0) return Bad("generation 1 starts past container 0");
    if (has_key) {
      if (!FromHex(w[4], {b, kKeyBytes})) return Bad("line " + std::to_string(i + 1));
      g.key.emplace(std::move(*MasterKey::FromBytes(std::string_view(reinterpret_cast<char*>(b), kKeyBytes))));
      sodium_memzero(b, sizeof b);
      if (!(KeyIdOf(*g.key) == g.id)) return Bad("a key does not match its key id");
    }
    r.gens_.push_back(std::move(g));
  }
  if (r.gens_.empty() || !r.current().key || !(r.current().id == have) || r.current().number != generation)
    return Bad("the current generation is not the key it is sealed under");
  return r;
}

}  // namespace muscle::crypto
