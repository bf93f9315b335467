// Every SQL statement the store runs, prepared once when the store opens.
// Private to the store implementation; same threading rules as Store.
#pragma once

#include "store/sqlite.h"
#include "store/store.h"

namespace muscle::store {

struct Store::Statements {
  explicit Statements(Db& db)
      : get_inode(db,
                  "SELECT mode,uid,gid,nlink,rdev,size,atime,mtime,ctime,btime,"
                  "version FROM inodes WHERE ino=?"),
        put_inode(db,
                  "UPDATE inodes SET mode=?,uid=?,gid=?,nlink=?,rdev=?,size=?,"
                  "atime=?,mtime=?,ctime=?,version=? WHERE ino=?"),
        insert_inode(db,
                     "INSERT INTO inodes(parent,mode,uid,gid,nlink,rdev,size,"
                     "atime,mtime,ctime,btime,version,target,ino) "
                     "VALUES(?,?,?,?,?,?,?,?,?,?,?,1,?,?)"),
        delete_inode(db, "DELETE FROM inodes WHERE ino=?"),
        get_parent(db, "SELECT parent FROM inodes WHERE ino=?"),
        set_parent(db, "UPDATE inodes SET parent=? WHERE ino=?"),
        get_target(db, "SELECT target FROM inodes WHERE ino=?"),
        count_inodes(db, "SELECT count(*) FROM inodes"),
        lookup(db, "SELECT id, ino FROM dirents WHERE parent=? AND name=?"),
        insert_dirent(db, "INSERT INTO dirents(parent,name,ino) VALUES(?,?,?)"),
        delete_dirent(db, "DELETE FROM dirents WHERE id=?"),
        move_dirent(db, "UPDATE dirents SET parent=?, name=? WHERE id=?"),
        find_name(db, "SELECT parent, name FROM dirents WHERE ino=? LIMIT 1"),
        dir_has_entries(db, "SELECT 1 FROM dirents WHERE parent=? LIMIT 1"),
        list_dir(db,
                 "SELECT d.id, d.name, d.ino, i.mode, i.version FROM dirents d "
                 "JOIN inodes i ON i.ino=d.ino WHERE d.parent=? AND d.id>? "
                 "ORDER BY d.id LIMIT ?"),
        get_xattr(db, "SELECT value FROM xattrs WHERE ino=? AND name=?"),
        list_xattr(db, "SELECT name FROM xattrs WHERE ino=? ORDER BY name"),
        put_xattr(db, "INSERT OR REPLACE INTO xattrs(ino,name,value) VALUES(?,?,?)"),
        delete_xattr(db, "DELETE FROM xattrs WHERE ino=? AND name=?"),
        delete_xattrs(db, "DELETE FROM xattrs WHERE ino=?"),
        get_op(db, "SELECT reply FROM op_results WHERE identity=? AND op=?"),
        put_op(db, "INSERT INTO op_results(identity, op, reply, at) VALUES(?, ?, ?, ?)"),
        extent_at_or_before(db,
                            "SELECT offset,length,chunk FROM extents WHERE ino=? "
                            "AND offset<=? ORDER BY offset DESC LIMIT 1"),
        extents_from(db,
                     "SELECT offset,length,chunk FROM extents WHERE ino=? AND "
                     "offset>=? ORDER BY offset LIMIT ?"),
        insert_extent(db,
                      "INSERT INTO extents(ino,offset,length,chunk) VALUES(?,?,?,?)"),
        delete_extent(db, "DELETE FROM extents WHERE ino=? AND offset=?"),
        find_chunk(db, "SELECT id FROM chunks WHERE hash=?"),
        insert_chunk(db,
                     "INSERT INTO chunks(hash,size,refs,pack,offset) VALUES(?,?,1,?,?)"),
        chunk_location(db, "SELECT pack, offset, size, hash FROM chunks WHERE id=?"),
        ref_chunk(db, "UPDATE chunks SET refs=refs+? WHERE id=?"),
        chunk_refs(db, "SELECT refs, kind FROM chunks WHERE id=?"),
        delete_chunk(db, "DELETE FROM chunks WHERE id=?"),
        chunk_hash(db, "SELECT hash FROM chunks WHERE id=?"),
        insert_object(db,
                      "INSERT INTO chunks(hash,size,refs,pack,offset,kind) VALUES(?,?,1,?,?,1)"),
        chunk_by_hash(db, "SELECT id, pack, offset, size, kind FROM chunks WHERE hash=?"),
        set_kind(db, "UPDATE chunks SET kind=1 WHERE id=?"),
        inode_obj(db, "SELECT obj, mode, parent FROM inodes WHERE ino=?"),
        set_obj(db, "UPDATE inodes SET obj=? WHERE ino=?"),
        parents_of(db, "SELECT parent FROM dirents WHERE ino=?"),
        freeze_list(db,
                    "SELECT d.name, i.ino, i.mode, i.uid, i.gid, i.size, i.rdev, i.mtime, "
                    "i.ctime, i.btime, i.obj, c.hash FROM dirents d JOIN inodes i ON "
                    "i.ino=d.ino LEFT JOIN chunks c ON c.id=i.obj WHERE d.parent=? "
                    "ORDER BY d.name"),
        file_chunks(db,
                    "SELECT e.offset, e.length, e.chunk, c.hash FROM extents e JOIN chunks c "
                    "ON c.id=e.chunk WHERE e.ino=? ORDER BY e.offset") {}

  Stmt get_inode, put_inode, insert_inode, delete_inode, get_parent,
      set_parent, get_target, count_inodes;
  Stmt lookup, insert_dirent, delete_dirent, move_dirent, find_name, dir_has_entries,
      list_dir;
  Stmt get_xattr, list_xattr, put_xattr, delete_xattr, delete_xattrs;
  Stmt get_op, put_op;
  Stmt extent_at_or_before, extents_from, insert_extent, delete_extent;
  Stmt find_chunk, insert_chunk, chunk_location, ref_chunk, chunk_refs, delete_chunk,
      chunk_hash;
  Stmt insert_object, chunk_by_hash, set_kind, inode_obj, set_obj, parents_of, freeze_list,
      file_chunks;
};

// Runs f() inside a savepoint of the open transaction: if f fails, every
// database change it made is rolled back.
inline Status StatusOf(const Status& s) { return s; }
template <class T>
Status StatusOf(const Result<T>& r) { return r.status(); }

template <class F>
auto Store::Atomically(F&& f) -> decltype(f()) {
  Status s = Begin();
  if (!s.ok()) return s;
  s = db_.Exec("SAVEPOINT op");
  if (!s.ok()) {
    AfterFailure(s);
    return s;
  }
  UndoMark mark = MarkUndo();
  savepoint_depth_++;
  auto r = f();
  savepoint_depth_--;
  if (r.ok() && (txn_lost_ || sqlite3_get_autocommit(db_.raw()))) {
    // f() swallowed the error of a statement that cost the transaction.
    Status lost(EIO, "the transaction was abandoned after an I/O error");
    ForgetUncommitted(lost);
    return lost;
  }
  if (r.ok()) {
    s = db_.Exec("RELEASE op");
    if (!s.ok()) {
      AfterFailure(s);
      return s;
    }
    if (savepoint_depth_ == 0) DropSetAside();
    return r;
  }
  if (!in_txn_ || sqlite3_get_autocommit(db_.raw())) {
    AfterFailure(StatusOf(r));
    return r;
  }
  s = db_.Exec("ROLLBACK TO op");
  if (s.ok()) s = db_.Exec("RELEASE op");
  if (!s.ok()) {
    // Could not even undo the operation: give up the whole transaction.
    ForgetUncommitted(s);
    return r;
  }
  UndoTo(mark);
  return r;
}

}  // namespace muscle::store
