// A small blocking 9P2000.L client, used by the tests, the crash and
// bad-input harnesses, and tools. One request at a time per call of Rpc;
// Send/Receive allow several in flight. Version() can negotiate 9P2000 or
// 9P2000.u instead; the conveniences below are .L's, and the other
// dialects' messages go through Rpc (an Rerror becomes a Status: its
// errno in .u, EIO with the text in 9P2000).
//
// Not thread-safe; one Client per thread. It owns its socket.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "9p/messages.h"
#include "common/result.h"

namespace muscle::p9 {

// Where a Client's bytes go when not straight to its socket (a TLS
// session over it, see tls/tls_channel.h). Blocking; one thread.
class Channel {
 public:
  virtual ~Channel() = default;
  virtual Status Write(const char* data, size_t len) = 0;
  // Reads exactly len bytes.
  virtual Status Read(char* data, size_t len) = 0;
};

class Client {
 public:
  Client() = default;
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // "unix:PATH" or "tcp://HOST:PORT".
  Status Connect(const std::string& endpoint);
  // Takes over an already connected socket.
  void Adopt(int fd) { fd_ = fd; }
  // Sends and receives through `channel` (which uses fd()) from now on.
  void SetChannel(std::unique_ptr<Channel> channel) { channel_ = std::move(channel); }
  int fd() const { return fd_; }
  void Close();

  // Sends raw bytes (for malformed-input tests).
  Status SendRaw(const std::string& bytes);
  Status Send(uint16_t tag, const Message& msg);
  // Receives one reply frame; returns its tag through `tag`.
  Result<Message> Receive(uint16_t* tag = nullptr);
  // Sends and waits for the reply with the same tag. An Rlerror becomes a
  // Status with that errno.
  Result<Message> Rpc(const Message& msg);

  // Conveniences over Rpc.
  // Replies are decoded in the dialect `version` names once it is agreed.
  Status Version(uint32_t msize = 1024 * 1024, const std::string& version = "9P2000.L");
  Result<Qid> Attach(uint32_t fid, const std::string& aname = "",
                     uint32_t uid = 0);
  Result<std::vector<Qid>> Walk(uint32_t fid, uint32_t newfid,
                                const std::vector<std::string>& names);
  // Walks a slash-separated path from `fid` into `newfid`.
  Status WalkPath(uint32_t fid, uint32_t newfid, const std::string& path);
  Result<Qid> Open(uint32_t fid, uint32_t flags);
  Result<Qid> Create(uint32_t dirfid, const std::string& name, uint32_t flags,
                     uint32_t mode);
  Result<Qid> Mkdir(uint32_t dirfid, const std::string& name, uint32_t mode);
  Result<std::string> Read(uint32_t fid, uint64_t offset, uint32_t count);
  Result<uint32_t> Write(uint32_t fid, uint64_t offset, const std::string& data);
  // Reads a whole file through an open fid.
  Result<std::string> ReadAll(uint32_t fid);
  Status WriteAll(uint32_t fid, const std::string& data);
  Status Clunk(uint32_t fid);
  Status Fsync(uint32_t fid);
  Status Unlink(uint32_t dirfid, const std::string& name, uint32_t flags = 0);
  Result<Rgetattr> GetAttr(uint32_t fid);
  // One Treaddir of at most `count` bytes from `offset`: the names in the
  // reply (with "." and ".."), the offset to continue from, and the reply's
  // size. No names: the end of the directory.
  struct DirPage {
    std::vector<std::string> names;
    uint64_t next_offset = 0;
    size_t bytes = 0;
  };
  Result<DirPage> ReadDirPage(uint32_t fid, uint64_t offset, uint32_t count);
  // Names in an open directory (without "." and "..").
  Result<std::vector<std::string>> ReadDirNames(uint32_t fid);

  uint32_t msize() const { return msize_; }

 private:
  Status ReadFull(char* buf, size_t len);
  int fd_ = -1;
  std::unique_ptr<Channel> channel_;
  uint32_t msize_ = 8192;
  Dialect dialect_ = k9P2000L;
  uint16_t next_tag_ = 1;
};

}  // namespace muscle::p9
