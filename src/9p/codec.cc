#include "9p/codec.h"

#include <cstdio>
#include <utility>

#include "9p/wire.h"

namespace muscle::p9 {
namespace {

template <class T>
concept Record = requires { T::kRecord; };

struct DecodeVisitor {
  WireReader& r;
  // A stat record: size[2] then exactly that many bytes of fields.
  template <Record R>
  void record(R& rec) {
    uint16_t size = r.u16();
    std::string_view body = r.bytes(size);
    if (!r.ok()) return;
    WireReader sub(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    DecodeVisitor v{sub};
    rec.fields(v);
    if (!sub.ok() || sub.remaining() != 0) r.fail();
  }
  // As a message field: stat[n], a count that must be the record's size + 2.
  template <Record R>
  void operator()(const char*, R& rec) {
    uint16_t n = r.u16();
    if (!r.ok() || r.remaining() < 2) return r.fail();
    size_t before = r.remaining();
    record(rec);
    if (r.ok() && before - r.remaining() != n) r.fail();
  }
  void operator()(const char*, uint8_t& v) { v = r.u8(); }
  void operator()(const char*, uint16_t& v) { v = r.u16(); }
  void operator()(const char*, uint32_t& v) { v = r.u32(); }
  void operator()(const char*, uint64_t& v) { v = r.u64(); }
  void operator()(const char*, std::string& v) { v = std::string(r.str()); }
  void operator()(const char*, Qid& q) {
    q.type = r.u8();
    q.version = r.u32();
    q.path = r.u64();
  }
  void operator()(const char*, Data& d) {
    uint32_t n = r.u32();
    d.bytes = std::string(r.bytes(n));
  }
  void operator()(const char*, std::vector<std::string>& names) {
    uint16_t n = r.u16();
    if (n > kMaxWalkNames) return r.fail();
    names.resize(n);
    for (auto& s : names) s = std::string(r.str());
  }
  void operator()(const char*, std::vector<Qid>& qids) {
    uint16_t n = r.u16();
    if (n > kMaxWalkNames) return r.fail();
    qids.resize(n);
    for (auto& q : qids) (*this)("qid", q);
  }
};

struct EncodeVisitor {
  WireWriter& w;
  template <Record R>
  void record(const R& rec) {
    size_t at = w.size();
    w.u16(0);
    EncodeVisitor v{w};
    const_cast<R&>(rec).fields(v);
    size_t n = w.size() - at - 2;
    w.patch_u16(at, uint16_t(n));
  }
  template <Record R>
  void operator()(const char*, const R& rec) {
    size_t at = w.size();
    w.u16(0);
    record(rec);
    w.patch_u16(at, uint16_t(w.size() - at - 2));
  }
  void operator()(const char*, uint8_t v) { w.u8(v); }
  void operator()(const char*, uint16_t v) { w.u16(v); }
  void operator()(const char*, uint32_t v) { w.u32(v); }
  void operator()(const char*, uint64_t v) { w.u64(v); }
  void operator()(const char*, const std::string& v) { w.str(v); }
  void operator()(const char*, const Qid& q) {
    w.u8(q.type);
    w.u32(q.version);
    w.u64(q.path);
  }
  void operator()(const char*, const Data& d) {
    w.u32(uint32_t(d.bytes.size()));
    w.bytes(d.bytes);
  }
  void operator()(const char*, const std::vector<std::string>& names) {
    w.u16(uint16_t(names.size()));
    for (auto& s : names) w.str(s);
  }
  void operator()(const char*, const std::vector<Qid>& qids) {
    w.u16(uint16_t(qids.size()));
    for (auto& q : qids) (*this)("qid", q);
  }
};

std::string QidText(const Qid& q) {
  char b[64];
  snprintf(b, sizeof b, "(%02x %u %llu)", q.type, q.version,
           (unsigned long long)q.path);
  return b;
}

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      char b[8];
      snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

struct TraceVisitor {
  std::string& out;
  template <Record R>
  void operator()(const char* n, const R& rec) {
    out += ' ';
    out += n;
    out += "={";
    std::string inner;
    TraceVisitor v{inner};
    const_cast<R&>(rec).fields(v);
    out += inner.empty() ? inner : inner.substr(1);
    out += '}';
  }
  void field(const char* name, const std::string& value) {
    out += ' ';
    out += name;
    out += '=';
    out += value;
  }
  void operator()(const char* n, uint8_t v) { field(n, std::to_string(v)); }
  void operator()(const char* n, uint16_t v) { field(n, std::to_string(v)); }
  void operator()(const char* n, uint32_t v) { field(n, std::to_string(v)); }
  void operator()(const char* n, uint64_t v) { field(n, std::to_string(v)); }
  void operator()(const char* n, const std::string& v) { field(n, Quote(v)); }
  void operator()(const char* n, const Qid& q) { field(n, QidText(q)); }
  void operator()(const char* n, const Data& d) {
    field(n, "<" + std::to_string(d.bytes.size()) + " bytes>");
  }
  void operator()(const char* n, const std::vector<std::string>& names) {
    std::string s = "[";
    for (size_t i = 0; i < names.size(); i++) s += (i ? " " : "") + Quote(names[i]);
    field(n, s + "]");
  }
  void operator()(const char* n, const std::vector<Qid>& qids) {
    std::string s = "[";
    for (size_t i = 0; i < qids.size(); i++) s += (i ? " " : "") + QidText(qids[i]);
    field(n, s + "]");
  }
};

// Builds the decode table: for each alternative of Message, if its kType
// matches, decode into it.
template <size_t... I>
bool DecodeInto(uint8_t type, Dialect dialect, WireReader& r, Message& out,
                std::index_sequence<I...>) {
  bool found = false;
  auto try_one = [&](auto tag) {
    using T = std::variant_alternative_t<decltype(tag)::value, Message>;
    if (found || T::kType != type || !(DialectsOf<T>() & dialect)) return;
    found = true;
    T m;
    DecodeVisitor v{r};
    m.fields(v);
    out = std::move(m);
  };
  (try_one(std::integral_constant<size_t, I>{}), ...);
  return found;
}

}  // namespace

Decoded Decode(const uint8_t* frame, size_t len, Dialect dialect) {
  Decoded d;
  WireReader r(frame, len);
  uint32_t size = r.u32();
  d.type = r.u8();
  d.tag = r.u16();
  if (!r.ok() || size != len) {
    d.status = DecodeStatus::kMalformed;
    return d;
  }
  if (!DecodeInto(d.type, dialect, r, d.msg,
                  std::make_index_sequence<std::variant_size_v<Message>>{})) {
    d.status = DecodeStatus::kUnknownType;
    return d;
  }
  d.status = (r.ok() && r.remaining() == 0) ? DecodeStatus::kOk
                                            : DecodeStatus::kMalformed;
  return d;
}

void Encode(uint16_t tag, const Message& msg, std::string& out) {
  WireWriter w(out);
  size_t start = w.size();
  w.u32(0);
  w.u8(TypeOf(msg));
  w.u16(tag);
  std::visit(
      [&](const auto& m) {
        EncodeVisitor v{w};
        const_cast<std::remove_const_t<std::remove_reference_t<decltype(m)>>&>(m)
            .fields(v);
      },
      msg);
  w.patch_u32(start, uint32_t(w.size() - start));
}

void EncodeStat(const Stat& st, std::string& out) {
  WireWriter w(out);
  EncodeVisitor{w}.record(st);
}
void EncodeStat(const StatU& st, std::string& out) {
  WireWriter w(out);
  EncodeVisitor{w}.record(st);
}
bool DecodeStat(WireReader& r, Stat& st) {
  DecodeVisitor{r}.record(st);
  return r.ok();
}
bool DecodeStat(WireReader& r, StatU& st) {
  DecodeVisitor{r}.record(st);
  return r.ok();
}
size_t StatSize(const Stat& st) {
  std::string b;
  EncodeStat(st, b);
  return b.size();
}
size_t StatSize(const StatU& st) {
  std::string b;
  EncodeStat(st, b);
  return b.size();
}

uint8_t TypeOf(const Message& msg) {
  return std::visit([](const auto& m) { return m.kType; }, msg);
}

uint8_t DialectsOf(const Message& msg) {
  return std::visit([](const auto& m) { return DialectsOf<std::decay_t<decltype(m)>>(); }, msg);
}

const char* NameOf(const Message& msg) {
  return std::visit([](const auto& m) { return m.kName; }, msg);
}

std::string Trace(uint16_t tag, const Message& msg) {
  std::string out = NameOf(msg);
  out += " tag=" + std::to_string(tag);
  std::visit(
      [&](const auto& m) {
        TraceVisitor v{out};
        const_cast<std::remove_const_t<std::remove_reference_t<decltype(m)>>&>(m)
            .fields(v);
      },
      msg);
  return out;
}

}  // namespace muscle::p9
