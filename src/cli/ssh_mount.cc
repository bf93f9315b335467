// muscle mount --ssh: the kernel's 9P connection is one end of a
// socketpair whose other end is ssh's stdin and stdout; on the server
// host, `muscle stdio` joins it to the musclefs unix socket.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "cli/stdio.h"
#include "transport/claim.h"

namespace muscle::cli {

namespace {

int Fail(const std::string& msg) {
  fprintf(stderr, "muscle mount: %s\n", msg.c_str());
  return 1;
}

// A word for the remote shell: sshd runs the remote command through the
// user's shell, so anything but plain characters is single-quoted.
std::string ShellWord(const std::string& w) {
  bool plain = !w.empty();
  for (char c : w) plain &= isalnum(static_cast<unsigned char>(c)) || strchr("/._-=@+:,", c);
  if (plain) return w;
  std::string q = "'";
  for (char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

bool WantsSshMount(int argc, char** argv) {
  if (argc < 2 || strcmp(argv[1], "mount") != 0) return false;
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--ssh")) return true;
  return false;
}

int SshMountMain(int argc, char** argv) {
  std::string host, dir, msize = "1048576", aname, ssh_command = "ssh";
  std::vector<std::string> remote = {"muscle", "stdio"}, mount_opts;
  transport::Claim claim;
  for (int i = 0; i < argc; i++) {
    std::string s = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    std::string v;
    if (s == "--ssh") {
      if (!value(host)) return Fail("--ssh needs [USER@]HOST");
    } else if (s == "--read-only") {
      claim.read_only = true;
      remote.push_back(s);
    } else if (s == "--base" || s == "--identity" || s == "--root") {
      if (!value(v)) return Fail(s + " needs a value");
      if (s == "--identity") claim.identity = v;
      if (s == "--root") claim.root = v;
      remote.push_back(s);
      remote.push_back(v);
    } else if (s == "--ssh-command" || s == "--msize" || s == "--aname" || s == "-o" ||
               s == "--remote-muscle") {
      if (!value(v)) return Fail(s + " needs a value");
      if (s == "--ssh-command")
        ssh_command = v;
      else if (s == "--remote-muscle")
        remote[0] = v;
      else if (s == "--msize")
        msize = v;
      else if (s == "--aname")
        aname = v;
      else
        mount_opts.push_back(v);
    } else if (s.rfind("-", 0) == 0) {
      return Fail("unknown option " + s + " (see muscle --help)");
    } else if (dir.empty()) {
      dir = s;
    } else {
      return Fail("usage: muscle mount --ssh [USER@]HOST DIR [options]");
    }
  }
  if (host.empty() || dir.empty())
    return Fail("usage: muscle mount --ssh [USER@]HOST DIR [options]");
  if (host[0] == '-') return Fail("host may not start with '-': " + host);
  if (Status s = transport::CheckClaim(claim); !s.ok()) return Fail(s.message());
  for (char c : msize)
    if (!isdigit(static_cast<unsigned char>(c))) return Fail("--msize needs a number");

  std::vector<std::string> cmd;
  std::istringstream words(ssh_command);
  for (std::string w; words >> w;) cmd.push_back(w);
  if (cmd.empty()) return Fail("--ssh-command is empty");
  // Without a terminal (ssh is detached below) ssh must not wait for a
  // password: SSH keys are the identities. "--" ends ssh's options.
  cmd.insert(cmd.end(), {"-o", "BatchMode=yes", "--", host});
  std::string line;
  for (auto& w : remote) line += (line.empty() ? "" : " ") + ShellWord(w);
  cmd.push_back(line);

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return Fail(std::string("socketpair: ") + strerror(errno));
  pid_t ssh = fork();
  if (ssh < 0) return Fail("fork");
  if (ssh == 0) {
    // Its own session: the mount outlives this terminal.
    setsid();
    signal(SIGHUP, SIG_IGN);
    dup2(sv[1], 0);
    dup2(sv[1], 1);
    std::vector<char*> av;
    for (auto& w : cmd) av.push_back(w.data());
    av.push_back(nullptr);
    execvp(av[0], av.data());
    fprintf(stderr, "muscle mount: cannot run %s: %s\n", av[0], strerror(errno));
    _exit(127);
  }
  close(sv[1]);
  // The kernel's end must survive exec of mount: clear close-on-exec.
  fcntl(sv[0], F_SETFD, 0);
  std::string opts = "trans=fd,rfdno=" + std::to_string(sv[0]) + ",wfdno=" + std::to_string(sv[0]) +
                     ",version=9p2000.L,msize=" + msize;
  if (!aname.empty()) opts += ",aname=" + aname;
  for (auto& m : mount_opts) opts += "," + m;
  std::string source = "muscle@ssh:" + host;
  pid_t m = fork();
  if (m == 0) {
    execlp("mount", "mount", "-t", "9p", "-o", opts.c_str(), source.c_str(), dir.c_str(), nullptr);
    _exit(127);
  }
  int st = 0;
  waitpid(m, &st, 0);
  close(sv[0]);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    kill(ssh, SIGTERM);
    waitpid(ssh, nullptr, 0);
    return Fail("mount -t 9p -o " + opts + " " + source + " " + dir +
                " failed (ssh's own messages are above)");
  }
  printf("mounted %s over ssh on %s (ssh pid %d); unmount with: muscle umount %s\n", host.c_str(),
         dir.c_str(), int(ssh), dir.c_str());
  return 0;
}

}  // namespace muscle::cli
