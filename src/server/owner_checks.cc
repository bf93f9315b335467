#include "server/owner_checks.h"

#include <sys/stat.h>

namespace muscle::server {

Result<store::Attr> MakeAs(store::Tree& s, const p9::FsRequest& req, uint64_t dir,
                           std::string_view name, uint32_t mode, uint32_t gid, uint64_t rdev,
                           std::string_view target) {
  if (Status may = req.owner.MayMake(mode); !may.ok()) return may;
  return s.Create(dir, name, mode, req.uid, req.owner.GroupOf(gid), rdev, target);
}

Result<store::Attr> ChangeAs(store::Tree& s, const p9::FsRequest& req, uint64_t ino,
                             const store::SetAttrRequest& change) {
  if (req.owner.Restricts() && (change.set_mode || change.set_uid || change.set_gid || change.set_size)) {
    auto now = s.GetAttr(ino);
    if (!now.ok()) return now.status();
    auth::OwnerRule::Change c;
    if (change.set_mode) c.mode = change.mode;
    if (change.set_uid) c.uid = change.uid;
    if (change.set_gid) c.gid = change.gid;
    c.contents = change.set_size && S_ISREG(now->mode);
    if (Status may = req.owner.MayChange(now->mode, c); !may.ok()) return may;
  }
  return s.SetAttr(ino, change);
}

Status MayWriteContents(const p9::FsRequest& req, const store::Attr& a) {
  auth::OwnerRule::Change c;
  c.contents = true;
  return req.owner.MayChange(a.mode, c);
}

}  // namespace muscle::server
