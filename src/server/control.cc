#include "server/control.h"

#include <sys/stat.h>

#include <cstring>
#include <ctime>

#include "common/log.h"
#include "server/metrics.h"

namespace muscle::server {

namespace {

using store::Store;

std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\t') out += "\\t";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string ErrorLine(const Status& s) {
  const char* name = strerrorname_np(s.err() ? s.err() : EIO);
  std::string msg = s.message().empty() ? strerror(s.err() ? s.err() : EIO) : s.message();
  return std::string("error ") + (name ? name : "EIO") + ": " + Escape(msg) + "\n";
}

// The client's rule, with its root as the views name subtrees.
struct Context {
  bool may_snapshot = false, read_only = false;
  std::string root;  // relative, "" = whole tree
  explicit Context(const auth::AccessRule& rule)
      : may_snapshot(rule.snapshot), read_only(rule.read_only), root(rule.Relative()) {}
  // A path the client named, as a path of the whole tree.
  std::string Path(std::string_view p) const {
    while (!p.empty() && p.front() == '/') p.remove_prefix(1);
    if (root.empty()) return std::string(p);
    return p.empty() ? root : root + "/" + std::string(p);
  }
};

Result<uint64_t> Count(const std::string& word) {
  char* end = nullptr;
  unsigned long long v = strtoull(word.c_str(), &end, 10);
  if (word.empty() || *end || v > 1000000) return Status(EINVAL, "not a count: '" + word + "'");
  return uint64_t(v);
}

// What snapshots this identity sees (Shows) and which one `ref` names
// for it (Visible). A confined identity sees only the snapshots holding
// its root directory, and names them by name or by the hash of its
// subtree there (never by the whole tree's root hash, which it is not
// shown); any other is, to it, a snapshot that does not exist (the same
// error, so a hidden name is not confirmed).
bool Shows(Store& s, const Context& ctx, const Store::SnapshotInfo& snap) {
  if (ctx.root.empty()) return true;
  auto e = s.ResolveIn(snap.root, snap.root_attr, ctx.root);
  return e.ok() && S_ISDIR(e->mode);
}
Result<Store::SnapshotInfo> Visible(Store& s, const Context& ctx, std::string_view ref) {
  auto snap = s.FindSnapshot(ref, ctx.root);
  if (snap.ok() && !Shows(s, ctx, *snap)) return Status(ENOENT, "no snapshot '" + std::string(ref) + "'");
  return snap;
}

}  // namespace

std::string ControlCommand(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); i++) {
    if (i) out.push_back('\0');
    out += words[i];
  }
  return out;
}

std::vector<std::vector<std::string>> ControlFields(std::string_view answer) {
  std::vector<std::vector<std::string>> lines;
  std::vector<std::string> fields(1);
  for (size_t i = 0; i < answer.size(); i++) {
    char c = answer[i];
    if (c == '\\' && i + 1 < answer.size()) {
      char n = answer[++i];
      fields.back() += n == 't' ? '\t' : n == 'n' ? '\n' : n;
    } else if (c == '\t') {
      fields.emplace_back();
    } else if (c == '\n') {
      lines.push_back(std::move(fields));
      fields.assign(1, "");
    } else {
      fields.back() += c;
    }
  }
  if (fields.size() > 1 || !fields[0].empty()) lines.push_back(std::move(fields));
  return lines;
}

std::string RunControl(Store& s, const auth::AccessRule& rule, std::string_view command,
                       Metrics* metrics) {
  Context ctx(rule);
  std::vector<std::string> w;
  {
    size_t i = 0;
    while (i <= command.size()) {
      size_t j = command.find('\0', i);
      if (j == std::string_view::npos) j = command.size();
      w.emplace_back(command.substr(i, j - i));
      i = j + 1;
    }
  }
  while (!w.empty() && w.back().empty() && w.size() > 1 && w[0] != "diff") w.pop_back();
  const std::string& cmd = w[0];
  auto need_snapshot_right = [&]() -> Status {
    if (!ctx.may_snapshot)
      return Status(EPERM, "this identity may not " + cmd +
                               " (an access rule with the word 'snapshot' allows it)");
    return Status::Ok();
  };
  std::string out = "ok\n";
  if (cmd == "status") {
    // Where the chunk data is and, for a bucket, what is not uploaded yet;
    // a confined identity learns nothing about the store as a whole.
    if (w.size() != 1) return ErrorLine(Status(EINVAL, "usage: status"));
    if (!ctx.root.empty())
      return ErrorLine(Status(EPERM, "status is about the whole store; this identity is confined"));
    for (const auto& [key, value] : s.ChunkStatus()) out += Escape(key) + "\t" + Escape(value) + "\n";
    if (metrics) {
      metrics->RefreshStore(s, true);  // this is the writer: its figures now
      Metrics::Figures f = metrics->Collect();
      // Who else is connected, from where, and what they do is the local
      // administrator's to see; an identity sees its own lines only.
      if (!rule.identity.empty()) {
        std::erase_if(f.connections, [&](const auto& c) { return c.identity != rule.identity; });
        std::erase_if(f.identities, [&](const auto& i) { return i.first != rule.identity; });
      }
      for (const auto& fields : StatusLines(f)) {
        for (size_t i = 0; i < fields.size(); i++) out += (i ? "\t" : "") + Escape(fields[i]);
        out += "\n";
      }
    }
    return out;
  }
  if (cmd == "snapshot") {
    if (w.size() > 2) return ErrorLine(Status(EINVAL, "usage: snapshot [NAME]"));
    if (Status p = need_snapshot_right(); !p.ok()) return ErrorLine(p);
    auto r = s.TakeSnapshot(w.size() > 1 ? w[1] : "");
    if (!r.ok()) return ErrorLine(r.status());
    std::string hash = store::HexOfHash(r->root), added = std::to_string(r->added_bytes);
    if (!ctx.root.empty()) {  // as in "snapshots": its subtree only
      auto e = s.ResolveIn(r->root, r->root_attr, ctx.root);
      hash = e.ok() ? store::HexOfHash(e->object) : "-";
      added = "-";
    }
    out += Escape(r->name) + "\t" + store::UtcTime(r->created_ns) + "\t" + hash + "\t" + added + "\n";
    return out;
  }
  if (cmd == "snapshots") {
    auto list = s.ListSnapshots();
    if (!list.ok()) return ErrorLine(list.status());
    for (const auto& i : *list) {
      std::string hash = store::HexOfHash(i.root), added = std::to_string(i.added_bytes);
      if (!ctx.root.empty()) {
        // A confined identity sees its subtree: its hash, and not what the
        // rest of the tree added.
        auto e = s.ResolveIn(i.root, i.root_attr, ctx.root);
        if (!e.ok()) continue;
        hash = store::HexOfHash(e->object);
        added = "-";
      }
      out += Escape(i.name) + "\t" + store::UtcTime(i.created_ns) + "\t" + hash + "\t" + added + "\n";
    }
    return out;
  }
  if (cmd == "history") {
    if (w.size() != 2) return ErrorLine(Status(EINVAL, "usage: history PATH"));
    auto h = s.History(ctx.Path(w[1]));
    if (!h.ok()) return ErrorLine(h.status());
    for (const auto& v : *h) {
      if (!Shows(s, ctx, v.snapshot)) continue;
      out += Escape(v.snapshot.name) + "\t" + store::UtcTime(v.snapshot.created_ns) + "\t";
      if (!v.present) {
        out += "removed\t-\t-\n";
        continue;
      }
      const char* type = S_ISDIR(v.entry.mode) ? "dir" : S_ISLNK(v.entry.mode) ? "symlink"
                         : S_ISREG(v.entry.mode) ? "file" : "node";
      out += std::string(type) + "\t" + std::to_string(v.entry.size) + "\t" +
             (v.entry.has_object ? store::HexOfHash(v.entry.object) : "-") + "\t" +
             store::UtcTime(v.entry.mtime_ns) + "\n";
    }
    return out;
  }
  if (cmd == "diff") {
    // diff A B PATH; B empty = the live tree now.
    if (w.size() != 4) return ErrorLine(Status(EINVAL, "usage: diff A B PATH (B empty: now)"));
    // Both named as this identity sees them, then passed on by name (a
    // name is looked up before any hash prefix).
    auto a = Visible(s, ctx, w[1]);
    if (!a.ok()) return ErrorLine(a.status());
    std::string b;
    if (!w[2].empty()) {
      auto sb = Visible(s, ctx, w[2]);
      if (!sb.ok()) return ErrorLine(sb.status());
      b = sb->name;
    }
    auto d = s.Diff(a->name, b, ctx.Path(w[3]));
    if (!d.ok()) return ErrorLine(d.status());
    for (const auto& c : *d) out += std::string(1, c.what) + "\t" + Escape(c.path) + "\n";
    return out;
  }
  if (cmd == "restore") {
    if (w.size() != 3 && w.size() != 4) return ErrorLine(Status(EINVAL, "usage: restore SNAP PATH [DEST]"));
    if (Status p = need_snapshot_right(); !p.ok()) return ErrorLine(p);
    if (ctx.read_only) return ErrorLine(Status(EROFS, "a read-only identity may not restore"));
    std::string path = ctx.Path(w[2]);
    std::string dest = w.size() == 4 && !w[3].empty() ? ctx.Path(w[3]) : path;
    if (dest == ctx.root && !ctx.root.empty())
      return ErrorLine(Status(EINVAL, "cannot restore over your root; give a destination"));
    auto snap = Visible(s, ctx, w[1]);
    if (!snap.ok()) return ErrorLine(snap.status());
    auto r = s.Restore(snap->name, path, dest);
    if (!r.ok()) return ErrorLine(r.status());
    Log("control: restored %s of snapshot %s to %s", QuotedForLog(path).c_str(),
        QuotedForLog(w[1]).c_str(), QuotedForLog(dest).c_str());
    out += Escape(w.size() == 4 && !w[3].empty() ? w[3] : w[2]) + "\n";
    return out;
  }
  if (cmd == "prune") {
    if (Status p = need_snapshot_right(); !p.ok()) return ErrorLine(p);
    // Snapshots are of the whole tree: forgetting one forgets everyone's
    // history in it, which a confined identity does not see and a
    // read-only one may not change.
    if (!ctx.root.empty())
      return ErrorLine(Status(EPERM, "prune forgets snapshots of the whole tree; this identity is confined"));
    if (ctx.read_only) return ErrorLine(Status(EROFS, "a read-only identity may not prune"));
    Store::PrunePolicy policy;
    for (size_t i = 1; i < w.size(); i++) {
      const std::string& k = w[i];
      if (k == "dry-run") {
        policy.dry_run = true;
        continue;
      }
      if (i + 1 >= w.size()) return ErrorLine(Status(EINVAL, k + " needs a count"));
      auto n = Count(w[++i]);
      if (!n.ok()) return ErrorLine(n.status());
      if (k == "keep-last") policy.keep_last = int(*n);
      else if (k == "keep-hourly") policy.keep_hourly = int(*n);
      else if (k == "keep-daily") policy.keep_daily = int(*n);
      else if (k == "keep-weekly") policy.keep_weekly = int(*n);
      else return ErrorLine(Status(EINVAL, "unknown prune rule '" + k + "'"));
    }
    auto r = s.Prune(policy);
    if (!r.ok()) return ErrorLine(r.status());
    for (const auto& i : *r) out += Escape(i.name) + "\t" + store::UtcTime(i.created_ns) + "\n";
    if (!policy.dry_run && !r->empty()) {
      // Give the space back now rather than at the next background pass.
      auto gc = s.CollectGarbage(false);
      if (!gc.ok()) Log("control: compaction after prune failed: %s", gc.status().ToString().c_str());
    }
    return out;
  }
  return ErrorLine(Status(EINVAL, "unknown command '" + cmd +
                                      "' (snapshot, snapshots, history, diff, restore, prune)"));
}

}  // namespace muscle::server
