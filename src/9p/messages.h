// The 9P messages musclefs understands (9P2000, 9P2000.u and 9P2000.L),
// described once.
//
// Each message is a plain struct with a kType constant and a fields()
// template that names every wire field in order. The codec (codec.h) derives
// decoding, encoding and the human-readable trace from fields(), so adding a
// message means adding one struct here and one entry in Message.
//
// Dialects: a message belongs to the dialects in its kDialects mask (9P2000.L
// only when it has none). Some type numbers mean different layouts in
// different dialects (Tattach and Tauth have n_uname in .u and .L but not in
// 9P2000; Tcreate, Rstat and Twstat carry the .u extension fields; Rerror
// carries an errno in .u): those are separate structs with the same kType
// and disjoint masks, and the decoder picks the one of the session's
// negotiated dialect.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace muscle::p9 {

constexpr uint16_t kNoTag = 0xffff;
constexpr uint32_t kNoFid = 0xffffffff;
constexpr uint32_t kNoUid = 0xffffffff;
constexpr int kMaxWalkNames = 16;
// size[4] type[1] tag[2]
constexpr uint32_t kHeaderSize = 7;
// Header plus the largest fixed part of Rread/Twrite (P9_IOHDRSZ).
constexpr uint32_t kIoHeaderSize = 24;
constexpr uint32_t kMinMsize = 4096;
constexpr uint32_t kMaxMsize = 1024 * 1024;

// Bits of a dialect mask; a session speaks exactly one.
enum Dialect : uint8_t {
  k9P2000 = 1,
  k9P2000u = 2,
  k9P2000L = 4,
};
constexpr uint8_t kLegacyDialects = k9P2000 | k9P2000u;  // the stat dialects
constexpr uint8_t kAllDialects = k9P2000 | k9P2000u | k9P2000L;

enum QidType : uint8_t {
  kQtDir = 0x80,
  kQtAppend = 0x40,
  kQtExcl = 0x20,
  kQtSymlink = 0x02,
  kQtFile = 0x00,
};

struct Qid {
  uint8_t type = 0;
  uint32_t version = 0;
  uint64_t path = 0;
  bool operator==(const Qid&) const = default;
};

// count[4] followed by count bytes (Rread, Twrite, Rreaddir payloads).
struct Data {
  std::string bytes;
  bool operator==(const Data&) const = default;
};

// Getattr request/valid mask bits.
constexpr uint64_t kGetattrBasic = 0x000007ff;
constexpr uint64_t kGetattrAll = 0x00003fff;

// Setattr valid bits.
enum SetattrBits : uint32_t {
  kSetMode = 0x001,
  kSetUid = 0x002,
  kSetGid = 0x004,
  kSetSize = 0x008,
  kSetAtime = 0x010,
  kSetMtime = 0x020,
  kSetCtime = 0x040,
  kSetAtimeSet = 0x080,
  kSetMtimeSet = 0x100,
};

// 9P2000 open/create modes (open(5)); kOAppend and kOExcl are .u's.
enum OpenMode : uint32_t {
  kORead = 0,
  kOWrite = 1,
  kORdwr = 2,
  kOExec = 3,
  kOTrunc = 0x10,
  kOCexec = 0x20,
  kORclose = 0x40,
  kOAppend = 0x80,
  kOExcl = 0x1000,
};

// Permission/mode bits of 9P2000 (stat(5)) and 9P2000.u.
enum DirMode : uint32_t {
  kDmDir = 0x80000000,
  kDmAppend = 0x40000000,
  kDmExcl = 0x20000000,
  kDmMount = 0x10000000,
  kDmAuth = 0x08000000,
  kDmTmp = 0x04000000,
  kDmSymlink = 0x02000000,  // .u
  kDmLink = 0x01000000,     // .u: Tcreate of a hard link
  kDmDevice = 0x00800000,   // .u
  kDmNamedPipe = 0x00200000,
  kDmSocket = 0x00100000,
  kDmSetuid = 0x00080000,
  kDmSetgid = 0x00040000,
  kDmSetvtx = 0x00010000,
};

enum LockType : uint8_t { kLockRead = 0, kLockWrite = 1, kLockUnlock = 2 };
// Tlock flags: the client waits (retries BLOCKED); a relay reclaims a lock
// its session held before the server restarted (9p/lock_table.h).
enum LockFlags : uint32_t { kLockFlagBlock = 1, kLockFlagReclaim = 2 };
enum LockStatus : uint8_t {
  kLockSuccess = 0,
  kLockBlocked = 1,
  kLockError = 2,
  kLockGrace = 3
};

// fields() is non-const; const messages are visited through a const_cast in
// the codec, whose visitors only read.
#define MUSCLE_FIELDS(...) \
  template <class V>       \
  void fields(V& v) {      \
    __VA_ARGS__;           \
  }

#define F(name) v(#name, name)

// The stat record of 9P2000 (stat(5)). On the wire: size[2] then these
// fields; as a message field (Rstat, Twstat) it is stat[n], a count[2]
// (size + 2) before the record. In Twstat, ~0 integers and empty strings
// mean "don't touch".
struct Stat {
  uint16_t type = 0;
  uint32_t dev = 0;
  Qid qid;
  uint32_t mode = 0, atime = 0, mtime = 0;
  uint64_t length = 0;
  std::string name, uid, gid, muid;
  static constexpr bool kRecord = true;
  MUSCLE_FIELDS(F(type); F(dev); F(qid); F(mode); F(atime); F(mtime); F(length); F(name); F(uid);
                F(gid); F(muid))
  bool operator==(const Stat&) const = default;
};
// 9P2000.u's: the same followed by extension[s] (symlink target, "b 8 1"
// / "c 4 64" for devices, a fid number for DMLINK) and numeric ids.
struct StatU : Stat {
  std::string extension;
  uint32_t n_uid = kNoUid, n_gid = kNoUid, n_muid = kNoUid;
  MUSCLE_FIELDS(Stat::fields(v); F(extension); F(n_uid); F(n_gid); F(n_muid))
  bool operator==(const StatU&) const = default;
};
// A Twstat record that changes nothing (Plan 9's nulldir): every integer
// ~0, every string empty. Sent as is, it asks for the file to be synced.
inline StatU DontTouchStat() {
  StatU s;
  s.type = 0xffff;
  s.dev = 0xffffffff;
  s.qid = Qid{0xff, 0xffffffff, ~uint64_t(0)};
  s.mode = s.atime = s.mtime = 0xffffffff;
  s.length = ~uint64_t(0);
  return s;
}
// True when a Twstat record asks for no change (muid, which no server
// keeps, and the extension do not count).
inline bool ChangesNothing(const StatU& st) {
  StatU none = DontTouchStat();
  return st.type == none.type && st.dev == none.dev && st.qid == none.qid &&
         st.mode == none.mode && st.atime == none.atime && st.mtime == none.mtime &&
         st.length == none.length && st.name.empty() && st.uid.empty() && st.gid.empty() &&
         st.n_uid == kNoUid && st.n_gid == kNoUid;
}

struct Rlerror { static constexpr uint8_t kType = 7; static constexpr const char* kName = "Rlerror";
  uint32_t ecode = 0; MUSCLE_FIELDS(F(ecode)) };
struct Tstatfs { static constexpr uint8_t kType = 8; static constexpr const char* kName = "Tstatfs";
  uint32_t fid = 0; MUSCLE_FIELDS(F(fid)) };
struct Rstatfs { static constexpr uint8_t kType = 9; static constexpr const char* kName = "Rstatfs";
  uint32_t type = 0, bsize = 0; uint64_t blocks = 0, bfree = 0, bavail = 0, files = 0, ffree = 0, fsid = 0; uint32_t namelen = 0;
  MUSCLE_FIELDS(F(type); F(bsize); F(blocks); F(bfree); F(bavail); F(files); F(ffree); F(fsid); F(namelen)) };
struct Tlopen { static constexpr uint8_t kType = 12; static constexpr const char* kName = "Tlopen";
  uint32_t fid = 0, flags = 0; MUSCLE_FIELDS(F(fid); F(flags)) };
struct Rlopen { static constexpr uint8_t kType = 13; static constexpr const char* kName = "Rlopen";
  Qid qid; uint32_t iounit = 0; MUSCLE_FIELDS(F(qid); F(iounit)) };
struct Tlcreate { static constexpr uint8_t kType = 14; static constexpr const char* kName = "Tlcreate";
  uint32_t fid = 0; std::string name; uint32_t flags = 0, mode = 0, gid = 0;
  MUSCLE_FIELDS(F(fid); F(name); F(flags); F(mode); F(gid)) };
struct Rlcreate { static constexpr uint8_t kType = 15; static constexpr const char* kName = "Rlcreate";
  Qid qid; uint32_t iounit = 0; MUSCLE_FIELDS(F(qid); F(iounit)) };
struct Tsymlink { static constexpr uint8_t kType = 16; static constexpr const char* kName = "Tsymlink";
  uint32_t fid = 0; std::string name, symtgt; uint32_t gid = 0;
  MUSCLE_FIELDS(F(fid); F(name); F(symtgt); F(gid)) };
struct Rsymlink { static constexpr uint8_t kType = 17; static constexpr const char* kName = "Rsymlink";
  Qid qid; MUSCLE_FIELDS(F(qid)) };
struct Tmknod { static constexpr uint8_t kType = 18; static constexpr const char* kName = "Tmknod";
  uint32_t dfid = 0; std::string name; uint32_t mode = 0, major = 0, minor = 0, gid = 0;
  MUSCLE_FIELDS(F(dfid); F(name); F(mode); F(major); F(minor); F(gid)) };
struct Rmknod { static constexpr uint8_t kType = 19; static constexpr const char* kName = "Rmknod";
  Qid qid; MUSCLE_FIELDS(F(qid)) };
struct Trename { static constexpr uint8_t kType = 20; static constexpr const char* kName = "Trename";
  uint32_t fid = 0, dfid = 0; std::string name; MUSCLE_FIELDS(F(fid); F(dfid); F(name)) };
struct Rrename { static constexpr uint8_t kType = 21; static constexpr const char* kName = "Rrename";
  MUSCLE_FIELDS((void)v) };
struct Treadlink { static constexpr uint8_t kType = 22; static constexpr const char* kName = "Treadlink";
  uint32_t fid = 0; MUSCLE_FIELDS(F(fid)) };
struct Rreadlink { static constexpr uint8_t kType = 23; static constexpr const char* kName = "Rreadlink";
  std::string target; MUSCLE_FIELDS(F(target)) };
struct Tgetattr { static constexpr uint8_t kType = 24; static constexpr const char* kName = "Tgetattr";
  uint32_t fid = 0; uint64_t request_mask = 0; MUSCLE_FIELDS(F(fid); F(request_mask)) };
struct Rgetattr { static constexpr uint8_t kType = 25; static constexpr const char* kName = "Rgetattr";
  uint64_t valid = 0; Qid qid; uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t nlink = 0, rdev = 0, size = 0, blksize = 0, blocks = 0;
  uint64_t atime_sec = 0, atime_nsec = 0, mtime_sec = 0, mtime_nsec = 0, ctime_sec = 0, ctime_nsec = 0;
  uint64_t btime_sec = 0, btime_nsec = 0, gen = 0, data_version = 0;
  MUSCLE_FIELDS(F(valid); F(qid); F(mode); F(uid); F(gid); F(nlink); F(rdev); F(size); F(blksize); F(blocks);
                F(atime_sec); F(atime_nsec); F(mtime_sec); F(mtime_nsec); F(ctime_sec); F(ctime_nsec);
                F(btime_sec); F(btime_nsec); F(gen); F(data_version)) };
struct Tsetattr { static constexpr uint8_t kType = 26; static constexpr const char* kName = "Tsetattr";
  uint32_t fid = 0, valid = 0, mode = 0, uid = 0, gid = 0; uint64_t size = 0;
  uint64_t atime_sec = 0, atime_nsec = 0, mtime_sec = 0, mtime_nsec = 0;
  MUSCLE_FIELDS(F(fid); F(valid); F(mode); F(uid); F(gid); F(size); F(atime_sec); F(atime_nsec); F(mtime_sec); F(mtime_nsec)) };
struct Rsetattr { static constexpr uint8_t kType = 27; static constexpr const char* kName = "Rsetattr";
  MUSCLE_FIELDS((void)v) };
struct Txattrwalk { static constexpr uint8_t kType = 30; static constexpr const char* kName = "Txattrwalk";
  uint32_t fid = 0, newfid = 0; std::string name; MUSCLE_FIELDS(F(fid); F(newfid); F(name)) };
struct Rxattrwalk { static constexpr uint8_t kType = 31; static constexpr const char* kName = "Rxattrwalk";
  uint64_t size = 0; MUSCLE_FIELDS(F(size)) };
struct Txattrcreate { static constexpr uint8_t kType = 32; static constexpr const char* kName = "Txattrcreate";
  uint32_t fid = 0; std::string name; uint64_t attr_size = 0; uint32_t flags = 0;
  MUSCLE_FIELDS(F(fid); F(name); F(attr_size); F(flags)) };
struct Rxattrcreate { static constexpr uint8_t kType = 33; static constexpr const char* kName = "Rxattrcreate";
  MUSCLE_FIELDS((void)v) };
struct Treaddir { static constexpr uint8_t kType = 40; static constexpr const char* kName = "Treaddir";
  uint32_t fid = 0; uint64_t offset = 0; uint32_t count = 0; MUSCLE_FIELDS(F(fid); F(offset); F(count)) };
struct Rreaddir { static constexpr uint8_t kType = 41; static constexpr const char* kName = "Rreaddir";
  Data data; MUSCLE_FIELDS(F(data)) };
struct Tfsync { static constexpr uint8_t kType = 50; static constexpr const char* kName = "Tfsync";
  uint32_t fid = 0, datasync = 0; MUSCLE_FIELDS(F(fid); F(datasync)) };
struct Rfsync { static constexpr uint8_t kType = 51; static constexpr const char* kName = "Rfsync";
  MUSCLE_FIELDS((void)v) };
struct Tlock { static constexpr uint8_t kType = 52; static constexpr const char* kName = "Tlock";
  uint32_t fid = 0; uint8_t type = 0; uint32_t flags = 0; uint64_t start = 0, length = 0; uint32_t proc_id = 0; std::string client_id;
  MUSCLE_FIELDS(F(fid); F(type); F(flags); F(start); F(length); F(proc_id); F(client_id)) };
struct Rlock { static constexpr uint8_t kType = 53; static constexpr const char* kName = "Rlock";
  uint8_t status = 0; MUSCLE_FIELDS(F(status)) };
struct Tgetlock { static constexpr uint8_t kType = 54; static constexpr const char* kName = "Tgetlock";
  uint32_t fid = 0; uint8_t type = 0; uint64_t start = 0, length = 0; uint32_t proc_id = 0; std::string client_id;
  MUSCLE_FIELDS(F(fid); F(type); F(start); F(length); F(proc_id); F(client_id)) };
struct Rgetlock { static constexpr uint8_t kType = 55; static constexpr const char* kName = "Rgetlock";
  uint8_t type = 0; uint64_t start = 0, length = 0; uint32_t proc_id = 0; std::string client_id;
  MUSCLE_FIELDS(F(type); F(start); F(length); F(proc_id); F(client_id)) };
struct Tlink { static constexpr uint8_t kType = 70; static constexpr const char* kName = "Tlink";
  uint32_t dfid = 0, fid = 0; std::string name; MUSCLE_FIELDS(F(dfid); F(fid); F(name)) };
struct Rlink { static constexpr uint8_t kType = 71; static constexpr const char* kName = "Rlink";
  MUSCLE_FIELDS((void)v) };
struct Tmkdir { static constexpr uint8_t kType = 72; static constexpr const char* kName = "Tmkdir";
  uint32_t dfid = 0; std::string name; uint32_t mode = 0, gid = 0; MUSCLE_FIELDS(F(dfid); F(name); F(mode); F(gid)) };
struct Rmkdir { static constexpr uint8_t kType = 73; static constexpr const char* kName = "Rmkdir";
  Qid qid; MUSCLE_FIELDS(F(qid)) };
struct Trenameat { static constexpr uint8_t kType = 74; static constexpr const char* kName = "Trenameat";
  uint32_t olddirfid = 0; std::string oldname; uint32_t newdirfid = 0; std::string newname;
  MUSCLE_FIELDS(F(olddirfid); F(oldname); F(newdirfid); F(newname)) };
struct Rrenameat { static constexpr uint8_t kType = 75; static constexpr const char* kName = "Rrenameat";
  MUSCLE_FIELDS((void)v) };
struct Tunlinkat { static constexpr uint8_t kType = 76; static constexpr const char* kName = "Tunlinkat";
  uint32_t dirfid = 0; std::string name; uint32_t flags = 0; MUSCLE_FIELDS(F(dirfid); F(name); F(flags)) };
struct Runlinkat { static constexpr uint8_t kType = 77; static constexpr const char* kName = "Runlinkat";
  MUSCLE_FIELDS((void)v) };
// musclefs's extension (9P2000.L): newfid names again the inode whose
// qid.path is `path`, if it still exists below fid's attach root. For a
// client that reconnects: a fid bound by inode number finds the same file
// after a rename, where a path walked again would not (inode numbers are
// never reused by a store).
struct Trebind { static constexpr uint8_t kType = 150; static constexpr const char* kName = "Trebind";
  uint32_t fid = 0, newfid = 0; uint64_t path = 0; MUSCLE_FIELDS(F(fid); F(newfid); F(path)) };
struct Rrebind { static constexpr uint8_t kType = 151; static constexpr const char* kName = "Rrebind";
  Qid qid; MUSCLE_FIELDS(F(qid)) };
// musclefs's extension (9P2000.L): `request` holds one complete 9P2000.L
// T-message frame (size[4] type[1] tag[2] body, its tag ignored), run at
// most once per operation id `op` of the connection's identity: a client
// that resends it after a server restart gets the reply recorded the
// first time instead of a second execution. The reply is the inner
// request's own R-message (or Rlerror) with Tonce's tag: there is no
// Ronce, and 153 is not used. Which requests may be inside: the rows of
// 9p/ops.h (kOnce); the rest, musclefs(8) PROTOCOL.
struct Tonce { static constexpr uint8_t kType = 152; static constexpr const char* kName = "Tonce";
  uint64_t op = 0; Data request; MUSCLE_FIELDS(F(op); F(request)) };
struct Tversion { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 100; static constexpr const char* kName = "Tversion";
  uint32_t msize = 0; std::string version; MUSCLE_FIELDS(F(msize); F(version)) };
struct Rversion { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 101; static constexpr const char* kName = "Rversion";
  uint32_t msize = 0; std::string version; MUSCLE_FIELDS(F(msize); F(version)) };
struct Tauth { static constexpr uint8_t kDialects = k9P2000u | k9P2000L; static constexpr uint8_t kType = 102; static constexpr const char* kName = "Tauth";
  uint32_t afid = 0; std::string uname, aname; uint32_t n_uname = 0;
  MUSCLE_FIELDS(F(afid); F(uname); F(aname); F(n_uname)) };
struct Rauth { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 103; static constexpr const char* kName = "Rauth";
  Qid aqid; MUSCLE_FIELDS(F(aqid)) };
struct Tattach { static constexpr uint8_t kDialects = k9P2000u | k9P2000L; static constexpr uint8_t kType = 104; static constexpr const char* kName = "Tattach";
  uint32_t fid = 0, afid = 0; std::string uname, aname; uint32_t n_uname = 0;
  MUSCLE_FIELDS(F(fid); F(afid); F(uname); F(aname); F(n_uname)) };
struct Rattach { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 105; static constexpr const char* kName = "Rattach";
  Qid qid; MUSCLE_FIELDS(F(qid)) };
struct Tflush { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 108; static constexpr const char* kName = "Tflush";
  uint16_t oldtag = 0; MUSCLE_FIELDS(F(oldtag)) };
struct Rflush { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 109; static constexpr const char* kName = "Rflush";
  MUSCLE_FIELDS((void)v) };
struct Twalk { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 110; static constexpr const char* kName = "Twalk";
  uint32_t fid = 0, newfid = 0; std::vector<std::string> wnames; MUSCLE_FIELDS(F(fid); F(newfid); F(wnames)) };
struct Rwalk { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 111; static constexpr const char* kName = "Rwalk";
  std::vector<Qid> wqids; MUSCLE_FIELDS(F(wqids)) };
struct Tread { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 116; static constexpr const char* kName = "Tread";
  uint32_t fid = 0; uint64_t offset = 0; uint32_t count = 0; MUSCLE_FIELDS(F(fid); F(offset); F(count)) };
struct Rread { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 117; static constexpr const char* kName = "Rread";
  Data data; MUSCLE_FIELDS(F(data)) };
struct Twrite { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 118; static constexpr const char* kName = "Twrite";
  uint32_t fid = 0; uint64_t offset = 0; Data data; MUSCLE_FIELDS(F(fid); F(offset); F(data)) };
struct Rwrite { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 119; static constexpr const char* kName = "Rwrite";
  uint32_t count = 0; MUSCLE_FIELDS(F(count)) };
struct Tclunk { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 120; static constexpr const char* kName = "Tclunk";
  uint32_t fid = 0; MUSCLE_FIELDS(F(fid)) };
struct Rclunk { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 121; static constexpr const char* kName = "Rclunk";
  MUSCLE_FIELDS((void)v) };
struct Tremove { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 122; static constexpr const char* kName = "Tremove";
  uint32_t fid = 0; MUSCLE_FIELDS(F(fid)) };
struct Rremove { static constexpr uint8_t kDialects = kAllDialects; static constexpr uint8_t kType = 123; static constexpr const char* kName = "Rremove";
  MUSCLE_FIELDS((void)v) };

// 9P2000 and 9P2000.u only.
#define LEGACY(T, n, ...) \
  static constexpr uint8_t kDialects = __VA_ARGS__; static constexpr uint8_t kType = n; static constexpr const char* kName = #T
struct Rerror { LEGACY(Rerror, 107, k9P2000);
  std::string ename; MUSCLE_FIELDS(F(ename)) };
struct RerrorU { LEGACY(Rerror, 107, k9P2000u);
  std::string ename; uint32_t errnum = 0; MUSCLE_FIELDS(F(ename); F(errnum)) };
struct Tauth2000 { LEGACY(Tauth, 102, k9P2000);
  uint32_t afid = 0; std::string uname, aname; MUSCLE_FIELDS(F(afid); F(uname); F(aname)) };
struct Tattach2000 { LEGACY(Tattach, 104, k9P2000);
  uint32_t fid = 0, afid = 0; std::string uname, aname;
  MUSCLE_FIELDS(F(fid); F(afid); F(uname); F(aname)) };
struct Topen { LEGACY(Topen, 112, kLegacyDialects);
  uint32_t fid = 0; uint8_t mode = 0; MUSCLE_FIELDS(F(fid); F(mode)) };
struct Ropen { LEGACY(Ropen, 113, kLegacyDialects);
  Qid qid; uint32_t iounit = 0; MUSCLE_FIELDS(F(qid); F(iounit)) };
struct Tcreate { LEGACY(Tcreate, 114, k9P2000);
  uint32_t fid = 0; std::string name; uint32_t perm = 0; uint8_t mode = 0;
  MUSCLE_FIELDS(F(fid); F(name); F(perm); F(mode)) };
struct TcreateU { LEGACY(Tcreate, 114, k9P2000u);
  uint32_t fid = 0; std::string name; uint32_t perm = 0; uint8_t mode = 0; std::string extension;
  MUSCLE_FIELDS(F(fid); F(name); F(perm); F(mode); F(extension)) };
struct Rcreate { LEGACY(Rcreate, 115, kLegacyDialects);
  Qid qid; uint32_t iounit = 0; MUSCLE_FIELDS(F(qid); F(iounit)) };
struct Tstat { LEGACY(Tstat, 124, kLegacyDialects);
  uint32_t fid = 0; MUSCLE_FIELDS(F(fid)) };
struct Rstat { LEGACY(Rstat, 125, k9P2000);
  Stat stat; MUSCLE_FIELDS(F(stat)) };
struct RstatU { LEGACY(Rstat, 125, k9P2000u);
  StatU stat; MUSCLE_FIELDS(F(stat)) };
struct Twstat { LEGACY(Twstat, 126, k9P2000);
  uint32_t fid = 0; Stat stat; MUSCLE_FIELDS(F(fid); F(stat)) };
struct TwstatU { LEGACY(Twstat, 126, k9P2000u);
  uint32_t fid = 0; StatU stat; MUSCLE_FIELDS(F(fid); F(stat)) };
struct Rwstat { LEGACY(Rwstat, 127, kLegacyDialects);
  MUSCLE_FIELDS((void)v) };
#undef LEGACY

#undef F
#undef MUSCLE_FIELDS

using Message =
    std::variant<Rlerror, Tstatfs, Rstatfs, Tlopen, Rlopen, Tlcreate, Rlcreate,
                 Tsymlink, Rsymlink, Tmknod, Rmknod, Trename, Rrename,
                 Treadlink, Rreadlink, Tgetattr, Rgetattr, Tsetattr, Rsetattr,
                 Txattrwalk, Rxattrwalk, Txattrcreate, Rxattrcreate, Treaddir,
                 Rreaddir, Tfsync, Rfsync, Tlock, Rlock, Tgetlock, Rgetlock,
                 Tlink, Rlink, Tmkdir, Rmkdir, Trenameat, Rrenameat, Tunlinkat,
                 Runlinkat, Trebind, Rrebind, Tonce, Tversion, Rversion, Tauth, Rauth, Tattach, Rattach,
                 Tflush, Rflush, Twalk, Rwalk, Tread, Rread, Twrite, Rwrite,
                 Tclunk, Rclunk, Tremove, Rremove, Rerror, RerrorU, Tauth2000,
                 Tattach2000, Topen, Ropen, Tcreate, TcreateU, Rcreate, Tstat,
                 Rstat, RstatU, Twstat, TwstatU, Rwstat>;

// The dialects a message type belongs to (9P2000.L unless it says).
template <class T>
constexpr uint8_t DialectsOf() {
  if constexpr (requires { T::kDialects; }) return T::kDialects;
  else return k9P2000L;
}

}  // namespace muscle::p9
