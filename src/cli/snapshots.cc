#include "cli/snapshots.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "9p/client.h"
#include "auth/keys_file.h"
#include "server/config.h"
#include "server/control.h"
#include "tls/tls_channel.h"
#include "tls/tls_engine.h"
#include "transport/relay.h"

namespace muscle::cli {

namespace {

const char* kHelp = R"(usage:
  muscle snapshot [NAME]            take a snapshot of the tree now
  muscle snapshots                  list them: name, time, root hash, bytes added
  muscle status                     where the chunk data is; with a bucket, how much
                                    is not uploaded yet (on this host's disk only);
                                    connections, requests and bytes per identity,
                                    latency, store size and dedup, packs, snapshots,
                                    commit lag, low space, reader/writer answers
  muscle history PATH               the snapshots in which PATH changed, newest first
  muscle diff [A [B|now [PATH]]]    added (+), removed (-), modified (M) paths from
                                    snapshot A (default: the newest) to B (default:
                                    the live tree now), below PATH
  muscle restore SNAP PATH [--to DEST]
                                    bring PATH of snapshot SNAP back into the live
                                    tree (at DEST), sharing its data
  muscle snapshot prune [--keep-last N] [--keep-hourly N] [--keep-daily N]
                        [--keep-weekly N] [--dry-run]
                                    forget the other snapshots; their space is freed
options:
  --base DIR            (default $MUSCLE_BASE, else $HOME/lib/muscle): talk to the
                        server on $BASE/musclefs.sock, as its administrator
  --connect HOST:PORT   a server's TLS port instead, as --identity NAME (from
                        --keys FILE, default $BASE/keys); taking, pruning and
                        restoring need an access rule with the word "snapshot"
Snapshots are browsable read-only: mount with aname=@snapshots (every snapshot a
directory) or aname=@snapshots/NAME.
)";

int Fail(const std::string& msg) {
  fprintf(stderr, "muscle: %s\n", msg.c_str());
  return 1;
}

struct Options {
  std::vector<std::string> words;
  std::map<std::string, std::string> opts;
  bool dry_run = false;
};

// Keeps the TLS context alive as long as the client that uses it.
struct Connection {
  std::unique_ptr<tls::TlsContext> ctx;
  p9::Client client;
};

Status Open(const Options& o, Connection& c) {
  std::string base = o.opts.count("base") ? o.opts.at("base") : server::DefaultBase();
  if (o.opts.count("connect")) {
    std::string host;
    int port = 0;
    MUSCLE_RETURN_IF_ERROR(transport::SplitHostPort(o.opts.at("connect"), host, port));
    std::string keys_path = o.opts.count("keys") ? o.opts.at("keys") : base + "/keys";
    auto keys = auth::KeyTable::Load(keys_path);
    if (!keys.ok()) return keys.status();
    std::string identity;
    if (o.opts.count("identity")) identity = o.opts.at("identity");
    else if ((*keys)->size() == 1) identity = (*keys)->Identities()[0];
    else return Status(EINVAL, "pass --identity NAME (" + keys_path + " has " +
                                   std::to_string((*keys)->size()) + " identities)");
    const auth::Secret* k = (*keys)->Find(identity);
    if (!k) return Status(ENOENT, "no identity '" + identity + "' in " + keys_path);
    auto ctx = tls::TlsContext::ForClient(identity, *k);
    if (!ctx.ok()) return ctx.status();
    c.ctx = std::move(*ctx);
    auto fd = transport::ConnectTcp(host, port);
    if (!fd.ok()) return fd.status();
    c.client.Adopt(*fd);
    auto ch = tls::StartTlsChannel(*fd, *c.ctx);
    if (!ch.ok()) return ch.status();
    c.client.SetChannel(std::move(*ch));
  } else {
    std::string sock = base + "/musclefs.sock";
    Status s = c.client.Connect("unix:" + sock);
    if (!s.ok())
      return Status(s.err(), "cannot reach the server on " + sock + " (" + s.message() +
                                 "); is musclefs serving this base? (--base DIR, or --connect HOST:PORT)");
  }
  MUSCLE_RETURN_IF_ERROR(c.client.Version(1 << 20));
  auto q = c.client.Attach(1, "@ctl", getuid());
  if (!q.ok()) return Status(q.err(), "the server has no control file (" + q.status().message() + ")");
  auto op = c.client.Open(1, O_RDWR);
  if (!op.ok()) return op.status();
  return Status::Ok();
}

// Sends one command; the answer's result lines (after "ok").
Result<std::vector<std::vector<std::string>>> Run(Connection& c, const std::vector<std::string>& words) {
  auto w = c.client.Write(1, 0, server::ControlCommand(words));
  if (!w.ok()) return w.status();
  auto answer = c.client.ReadAll(1);
  if (!answer.ok()) return answer.status();
  auto lines = server::ControlFields(*answer);
  if (lines.empty()) return Status(EIO, "empty answer from the server");
  const std::string& head = lines[0][0];
  if (head != "ok") {
    // "error ENAME: message" -> "message (ENAME)"
    std::string msg = head.rfind("error ", 0) == 0 ? head.substr(6) : head;
    size_t colon = msg.find(": ");
    if (colon != std::string::npos) msg = msg.substr(colon + 2) + " (" + msg.substr(0, colon) + ")";
    return Status(EIO, msg);
  }
  lines.erase(lines.begin());
  return lines;
}

std::string Field(const std::vector<std::string>& f, size_t i) { return i < f.size() ? f[i] : ""; }

std::string Bytes(const std::string& n) {
  if (n == "-" || n.empty()) return "-";
  double v = strtod(n.c_str(), nullptr);
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, u++;
  char buf[32];
  snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

}  // namespace

bool IsSnapshotCommand(const char* cmd) {
  for (const char* c : {"snapshot", "snapshots", "history", "diff", "restore", "status"})
    if (!strcmp(cmd, c)) return true;
  return false;
}

int SnapshotMain(int argc, char** argv) {
  Options o;
  std::string cmd = argv[0];
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    if (s == "--help" || s == "-h") {
      fputs(kHelp, stdout);
      return 0;
    }
    if (s == "--dry-run") {
      o.dry_run = true;
    } else if (s.rfind("--", 0) == 0 && s.size() > 2) {
      static const char* known[] = {"--base", "--keys", "--connect", "--identity", "--to",
                                    "--keep-last", "--keep-hourly", "--keep-daily", "--keep-weekly"};
      bool ok = false;
      for (auto* k : known) ok |= s == k;
      if (!ok) return Fail("unknown option " + s + " (see muscle " + cmd + " --help)");
      if (i + 1 >= argc) return Fail(s + " needs a value");
      o.opts[s.substr(2)] = argv[++i];
    } else {
      o.words.push_back(s);
    }
  }
  std::vector<std::string> words;
  bool prune = cmd == "snapshot" && !o.words.empty() && o.words[0] == "prune";
  if (prune) {
    words = {"prune"};
    for (const char* k : {"keep-last", "keep-hourly", "keep-daily", "keep-weekly"})
      if (o.opts.count(k)) words.insert(words.end(), {k, o.opts.at(k)});
    if (words.size() == 1)
      return Fail("snapshot prune needs a rule: --keep-last N, --keep-hourly N, --keep-daily N or --keep-weekly N");
    if (o.dry_run) words.push_back("dry-run");
    if (o.words.size() > 1) return Fail("usage: muscle snapshot prune [--keep-... N] [--dry-run]");
  } else if (cmd == "snapshot") {
    if (o.words.size() > 1) return Fail("usage: muscle snapshot [NAME]");
    words = {"snapshot"};
    if (!o.words.empty()) words.push_back(o.words[0]);
  } else if (cmd == "snapshots") {
    if (!o.words.empty()) return Fail("usage: muscle snapshots");
    words = {"snapshots"};
  } else if (cmd == "status") {
    if (!o.words.empty()) return Fail("usage: muscle status");
    words = {"status"};
  } else if (cmd == "history") {
    if (o.words.size() != 1) return Fail("usage: muscle history PATH");
    words = {"history", o.words[0]};
  } else if (cmd == "diff") {
    if (o.words.size() > 3) return Fail("usage: muscle diff [A [B|now [PATH]]]");
    words = {"diff", o.words.size() > 0 ? o.words[0] : "", o.words.size() > 1 ? o.words[1] : "",
             o.words.size() > 2 ? o.words[2] : ""};
    if (words[2] == "now") words[2] = "";
  } else if (cmd == "restore") {
    if (o.words.size() != 2) return Fail("usage: muscle restore SNAP PATH [--to DEST]");
    words = {"restore", o.words[0], o.words[1]};
    if (o.opts.count("to")) words.push_back(o.opts.at("to"));
  }
  Connection c;
  Status s = Open(o, c);
  if (!s.ok()) return Fail(s.message());
  if (cmd == "diff" && words[1].empty()) {
    // The newest snapshot.
    auto list = Run(c, {"snapshots"});
    if (!list.ok()) return Fail(list.status().message());
    if (list->empty()) return Fail("there is no snapshot yet (muscle snapshot takes one)");
    words[1] = list->back()[0];
  }
  auto r = Run(c, words);
  if (!r.ok()) return Fail(r.status().message());
  if (prune) {
    for (auto& f : *r)
      printf("%s %s (%s)\n", o.dry_run ? "would remove" : "removed", Field(f, 0).c_str(), Field(f, 1).c_str());
    if (r->empty()) printf("nothing to remove\n");
  } else if (cmd == "snapshot") {
    auto& f = r->at(0);
    printf("snapshot %s taken at %s: root %s, %s added\n", Field(f, 0).c_str(), Field(f, 1).c_str(),
           Field(f, 2).c_str(), Bytes(Field(f, 3)).c_str());
  } else if (cmd == "snapshots") {
    if (!r->empty()) printf("%-28s %-21s %-16s %s\n", "NAME", "TIME", "ROOT", "ADDED");
    for (auto& f : *r)
      printf("%-28s %-21s %-16.16s %s\n", Field(f, 0).c_str(), Field(f, 1).c_str(), Field(f, 2).c_str(),
             Bytes(Field(f, 3)).c_str());
  } else if (cmd == "history") {
    for (auto& f : *r) {
      if (Field(f, 2) == "removed")
        printf("%s  %-28s removed\n", Field(f, 1).c_str(), Field(f, 0).c_str());
      else
        printf("%s  %-28s %-7s %12s  %.16s  modified %s\n", Field(f, 1).c_str(), Field(f, 0).c_str(),
               Field(f, 2).c_str(), Field(f, 3).c_str(), Field(f, 4).c_str(), Field(f, 5).c_str());
    }
    if (r->empty()) printf("%s is in no snapshot\n", words[1].c_str());
  } else if (cmd == "diff") {
    for (auto& f : *r) printf("%s %s\n", Field(f, 0).c_str(), Field(f, 1).c_str());
  } else if (cmd == "status") {
    for (auto& f : *r) {
      std::string name = Field(f, 0), value = Field(f, 1);
      bool bytes = name.size() > 6 && name.compare(name.size() - 6, 6, "-bytes") == 0;
      if (bytes || name == "cache-limit") value += " (" + Bytes(value) + ")";
      // Lines with more fields (connection, identity, latency): all of them.
      for (size_t i = 2; i < f.size(); i++) value += "  " + f[i];
      printf("%-20s %s\n", (name + ":").c_str(), value.c_str());
    }
  } else if (cmd == "restore") {
    printf("restored %s from snapshot %s\n", Field(r->at(0), 0).c_str(), words[1].c_str());
  }
  return 0;
}

}  // namespace muscle::cli
