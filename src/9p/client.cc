#include "9p/client.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "9p/codec.h"
#include "9p/wire.h"

namespace muscle::p9 {

Client::~Client() { Close(); }

void Client::Close() {
  channel_.reset();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

Status Client::Connect(const std::string& ep) {
  Close();
  if (ep.rfind("unix:", 0) == 0) {
    std::string path = ep.substr(5);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) return Status(ENAMETOOLONG, path);
    strcpy(sa.sun_path, path.c_str());
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      int e = errno;
      Close();
      return Status(e, "connect " + ep);
    }
    return Status::Ok();
  }
  std::string rest = ep.rfind("tcp://", 0) == 0 ? ep.substr(6) : ep;
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return Status(EINVAL, "bad endpoint " + ep);
  std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
  if (host.size() > 2 && host[0] == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0)
    return Status(EINVAL, "cannot resolve " + host);
  fd_ = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int rc = connect(fd_, res->ai_addr, res->ai_addrlen);
  int e = errno;
  freeaddrinfo(res);
  if (rc != 0) {
    Close();
    return Status(e, "connect " + ep);
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
  return Status::Ok();
}

Status Client::SendRaw(const std::string& bytes) {
  if (channel_) return channel_->Write(bytes.data(), bytes.size());
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(errno, "send");
    }
    off += size_t(n);
  }
  return Status::Ok();
}

Status Client::Send(uint16_t tag, const Message& msg) {
  std::string frame;
  Encode(tag, msg, frame);
  return SendRaw(frame);
}

namespace {
Status ReadFull(int fd, char* buf, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = recv(fd, buf + off, len - off, 0);
    if (n == 0) return Status(ECONNRESET, "connection closed by server");
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(errno, "recv");
    }
    off += size_t(n);
  }
  return Status::Ok();
}
}  // namespace

Status Client::ReadFull(char* buf, size_t len) {
  if (channel_) return channel_->Read(buf, len);
  return muscle::p9::ReadFull(fd_, buf, len);
}

Result<Message> Client::Receive(uint16_t* tag) {
  char hdr[4];
  MUSCLE_RETURN_IF_ERROR(ReadFull(hdr, 4));
  uint32_t size;
  memcpy(&size, hdr, 4);
  if (size < kHeaderSize || size > kMaxMsize + 4096)
    return Status(EPROTO, "bad reply size " + std::to_string(size));
  std::string frame(size, '\0');
  memcpy(frame.data(), hdr, 4);
  MUSCLE_RETURN_IF_ERROR(ReadFull(frame.data() + 4, size - 4));
  Decoded d = Decode(reinterpret_cast<const uint8_t*>(frame.data()), frame.size(), dialect_);
  if (d.status != DecodeStatus::kOk) return Status(EPROTO, "undecodable reply");
  if (tag) *tag = d.tag;
  return std::move(d.msg);
}

Result<Message> Client::Rpc(const Message& msg) {
  uint16_t tag = std::holds_alternative<Tversion>(msg) ? kNoTag : next_tag_++;
  if (next_tag_ == kNoTag) next_tag_ = 1;
  MUSCLE_RETURN_IF_ERROR(Send(tag, msg));
  for (;;) {
    uint16_t got;
    auto r = Receive(&got);
    if (!r.ok()) return r;
    if (got != tag) continue;  // a late reply to something else
    if (auto* e = std::get_if<Rlerror>(&*r)) return Status(int(e->ecode));
    if (auto* e = std::get_if<RerrorU>(&*r)) return Status(int(e->errnum), e->ename);
    if (auto* e = std::get_if<Rerror>(&*r)) return Status(EIO, e->ename);
    return r;
  }
}

template <class R>
static Result<R> Expect(Result<Message> m) {
  if (!m.ok()) return m.status();
  if (auto* r = std::get_if<R>(&*m)) return std::move(*r);
  return Status(EPROTO, std::string("unexpected reply ") + NameOf(*m));
}

Status Client::Version(uint32_t msize, const std::string& version) {
  auto r = Expect<Rversion>(Rpc(Tversion{msize, version}));
  if (!r.ok()) return r.status();
  if (r->version != version) return Status(EPROTO, "server speaks " + r->version);
  dialect_ = version == "9P2000" ? k9P2000 : version == "9P2000.u" ? k9P2000u : k9P2000L;
  msize_ = r->msize;
  return Status::Ok();
}

Result<Qid> Client::Attach(uint32_t fid, const std::string& aname, uint32_t uid) {
  auto r = Expect<Rattach>(Rpc(Tattach{fid, kNoFid, "", aname, uid}));
  if (!r.ok()) return r.status();
  return r->qid;
}

Result<std::vector<Qid>> Client::Walk(uint32_t fid, uint32_t newfid,
                                      const std::vector<std::string>& names) {
  auto r = Expect<Rwalk>(Rpc(Twalk{fid, newfid, names}));
  if (!r.ok()) return r.status();
  return r->wqids;
}

Status Client::WalkPath(uint32_t fid, uint32_t newfid, const std::string& path) {
  std::vector<std::string> names;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) names.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  // At most 16 names per Twalk: walk the rest in place.
  size_t done = 0;
  uint32_t from = fid;
  do {
    std::vector<std::string> part(names.begin() + done,
                                  names.begin() + std::min(names.size(), done + 16));
    auto q = Walk(from, newfid, part);
    if (!q.ok()) {
      if (from == newfid) Clunk(newfid);
      return q.status();
    }
    if (q->size() != part.size()) {
      if (from == newfid) Clunk(newfid);
      return Status(ENOENT);
    }
    done += part.size();
    from = newfid;
  } while (done < names.size());
  return Status::Ok();
}

Result<Qid> Client::Open(uint32_t fid, uint32_t flags) {
  auto r = Expect<Rlopen>(Rpc(Tlopen{fid, flags}));
  if (!r.ok()) return r.status();
  return r->qid;
}

Result<Qid> Client::Create(uint32_t dirfid, const std::string& name, uint32_t flags,
                           uint32_t mode) {
  auto r = Expect<Rlcreate>(Rpc(Tlcreate{dirfid, name, flags, mode, 0}));
  if (!r.ok()) return r.status();
  return r->qid;
}

Result<Qid> Client::Mkdir(uint32_t dirfid, const std::string& name, uint32_t mode) {
  auto r = Expect<Rmkdir>(Rpc(Tmkdir{dirfid, name, mode, 0}));
  if (!r.ok()) return r.status();
  return r->qid;
}

Result<std::string> Client::Read(uint32_t fid, uint64_t offset, uint32_t count) {
  auto r = Expect<Rread>(Rpc(Tread{fid, offset, count}));
  if (!r.ok()) return r.status();
  return std::move(r->data.bytes);
}

Result<uint32_t> Client::Write(uint32_t fid, uint64_t offset, const std::string& data) {
  auto r = Expect<Rwrite>(Rpc(Twrite{fid, offset, Data{data}}));
  if (!r.ok()) return r.status();
  return r->count;
}

Result<std::string> Client::ReadAll(uint32_t fid) {
  std::string out;
  for (;;) {
    auto r = Read(fid, out.size(), msize_ - kIoHeaderSize);
    if (!r.ok()) return r.status();
    if (r->empty()) return out;
    out += *r;
  }
}

Status Client::WriteAll(uint32_t fid, const std::string& data) {
  size_t off = 0, chunk = msize_ - kIoHeaderSize;
  while (off < data.size()) {
    auto n = Write(fid, off, data.substr(off, chunk));
    if (!n.ok()) return n.status();
    if (*n == 0) return Status(EIO, "short write");
    off += *n;
  }
  return Status::Ok();
}

Status Client::Clunk(uint32_t fid) { return Expect<Rclunk>(Rpc(Tclunk{fid})).status(); }
Status Client::Fsync(uint32_t fid) { return Expect<Rfsync>(Rpc(Tfsync{fid, 0})).status(); }
Status Client::Unlink(uint32_t dirfid, const std::string& name, uint32_t flags) {
  return Expect<Runlinkat>(Rpc(Tunlinkat{dirfid, name, flags})).status();
}

Result<Rgetattr> Client::GetAttr(uint32_t fid) {
  return Expect<Rgetattr>(Rpc(Tgetattr{fid, kGetattrAll}));
}

Result<Client::DirPage> Client::ReadDirPage(uint32_t fid, uint64_t offset, uint32_t count) {
  auto r = Expect<Rreaddir>(Rpc(Treaddir{fid, offset, count}));
  if (!r.ok()) return r.status();
  const std::string& b = r->data.bytes;
  DirPage page;
  page.bytes = b.size();
  page.next_offset = offset;
  WireReader rd(reinterpret_cast<const uint8_t*>(b.data()), b.size());
  while (rd.ok() && rd.remaining() > 0) {
    rd.u8();
    rd.u32();
    rd.u64();
    uint64_t next = rd.u64();
    rd.u8();
    std::string name(rd.str());
    if (!rd.ok()) break;
    page.next_offset = next;
    page.names.push_back(std::move(name));
  }
  if (!rd.ok()) return Status(EPROTO, "bad readdir payload");
  return page;
}

Result<std::vector<std::string>> Client::ReadDirNames(uint32_t fid) {
  std::vector<std::string> names;
  uint64_t offset = 0;
  for (;;) {
    auto page = ReadDirPage(fid, offset, msize_ - kIoHeaderSize);
    if (!page.ok()) return page.status();
    if (page->names.empty()) return names;
    for (auto& name : page->names)
      if (name != "." && name != "..") names.push_back(std::move(name));
    offset = page->next_offset;
  }
}

}  // namespace muscle::p9
