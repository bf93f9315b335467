#include "cli/stdio.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "server/config.h"
#include "transport/claim.h"

namespace muscle::cli {

namespace {

const char* kStdioUsage = R"(usage: muscle stdio [--base DIR] [--socket PATH] [--identity NAME]
                    [--root /PATH] [--read-only]
Carries 9P between stdin/stdout and the local musclefs unix socket
(default $BASE/musclefs.sock), e.g. as an SSH forced command:
  restrict,command="muscle stdio --base /var/lib/musclefs --identity alice" ssh-ed25519 AAAA...
--identity applies the server's `access = NAME ...` rule; --root and
--read-only narrow it further. The client cannot widen them.
)";

int Fail(const std::string& msg) {
  fprintf(stderr, "muscle stdio: %s\n", msg.c_str());
  return 1;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= size_t(w);
  }
  return true;
}

// Copies until end of input or an error; returns 0, or the errno of a
// failed read (negative) or write (positive).
int Copy(int from, int to) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(from, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return 0;
    if (!WriteAll(to, buf, size_t(n))) return errno ? errno : EPIPE;
  }
}

// Reads the server's one-line answer to a claim, byte by byte so that no
// 9P byte after it is consumed.
Result<std::string> ReadAnswer(int fd) {
  std::string line;
  while (line.size() < transport::kMaxClaimLine) {
    char ch;
    ssize_t n = read(fd, &ch, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(errno, std::string("reading the server's answer: ") + strerror(errno));
    if (n == 0)
      return Status(ECONNRESET, "the server closed the connection before answering the claim");
    if (ch == '\n') return line;
    line += ch;
  }
  return Status(EPROTO, "the server's answer to the claim is too long");
}

}  // namespace

int StdioMain(int argc, char** argv) {
  std::string base = server::DefaultBase(), socket_path;
  transport::Claim claim;
  bool claiming = false;
  for (int i = 0; i < argc; i++) {
    std::string s = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    if (s == "--help" || s == "-h") {
      fputs(kStdioUsage, stdout);
      return 0;
    } else if (s == "--read-only") {
      claim.read_only = claiming = true;
    } else if (s == "--base" || s == "--socket" || s == "--identity" || s == "--root") {
      std::string v;
      if (!value(v)) return Fail(s + " needs a value");
      if (s == "--base")
        base = v;
      else if (s == "--socket")
        socket_path = v;
      else if (s == "--identity")
        claim.identity = v, claiming = true;
      else
        claim.root = v, claiming = true;
    } else {
      fputs(kStdioUsage, stderr);
      return Fail("unknown argument '" + s + "'");
    }
  }
  if (claiming) {
    Status s = transport::CheckClaim(claim);
    if (!s.ok()) return Fail(s.message());
  }
  if (socket_path.empty()) socket_path = base + "/musclefs.sock";
  signal(SIGPIPE, SIG_IGN);

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path)
    return Fail("socket path too long: " + socket_path);
  memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Fail(std::string("socket: ") + strerror(errno));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    if (e == ENOENT || e == ECONNREFUSED)
      return Fail("no musclefs is serving " + socket_path + " (" + strerror(e) +
                  "); start it with: musclefs serve --base " + base);
    return Fail("connect " + socket_path + ": " + strerror(e));
  }
  if (claiming) {
    std::string line = transport::FormatClaim(claim);
    if (!WriteAll(fd, line.data(), line.size()))
      return Fail(std::string("sending the claim: ") + strerror(errno));
    auto answer = ReadAnswer(fd);
    if (!answer.ok()) return Fail(answer.status().message());
    if (*answer != "ok")
      return Fail("the server refused: " +
                  (answer->rfind("error: ", 0) == 0 ? answer->substr(7) : *answer));
  }

  // stdin -> socket in a thread; at its end the socket is half-closed so
  // the server answers what it received and then closes. socket -> stdout
  // here: when the server closes, there is nothing more to carry.
  std::atomic<int> up_result{0};
  std::thread up([&] {
    up_result = Copy(0, fd);
    shutdown(fd, SHUT_WR);
  });
  int down = Copy(fd, 1);
  close(1);
  int status = 0;
  if (down < 0 && -down != ECONNRESET)
    status = Fail(std::string("reading from the server: ") + strerror(-down));
  else if (down > 0)
    status = Fail(std::string("writing to stdout: ") + strerror(down));
  else if (down < 0)
    status = Fail("the server reset the connection");
  // The input side may still be blocked reading stdin, which nothing will
  // ever need again: report its error if it already ended, then leave.
  up.detach();
  if (int r = up_result.load(); status == 0 && r != 0) {
    int e = r < 0 ? -r : r;
    status = Fail(std::string(r < 0 ? "reading stdin: " : "writing to the server: ") + strerror(e));
  }
  fflush(stderr);
  _exit(status);
}

}  // namespace muscle::cli
