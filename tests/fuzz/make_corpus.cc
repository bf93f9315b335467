// Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/): one
// valid frame of every kind of request for the codec, short conversations
// for the session, sample keys and config files. Run by hand after the
// protocol changes: build/tests/fuzz_make_corpus tests/fuzz/corpus
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "9p/codec.h"

using namespace muscle::p9;

namespace {
// One frame of m (tag 0), as a Tonce carries it.
std::string Frame(const Message& m) {
  std::string f;
  Encode(0, m, f);
  return f;
}
void Put(const std::string& dir, const std::string& name, const std::string& bytes) {
  mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fuzz_make_corpus DIR\n");
    return 2;
  }
  std::string root = argv[1];
  mkdir(root.c_str(), 0755);
  std::vector<std::pair<std::string, Message>> msgs = {
      {"version", Tversion{65536, "9P2000.L"}},
      {"attach", Tattach{0, kNoFid, "user", "/", 0}},
      {"walk", Twalk{0, 1, {"a", "b", ".."}}},
      {"lopen", Tlopen{1, 2}},
      {"lcreate", Tlcreate{1, "new", 0102, 0644, 0}},
      {"read", Tread{1, 0, 4096}},
      {"write", Twrite{1, 0, Data{"hello, world"}}},
      {"clunk", Tclunk{1}},
      {"remove", Tremove{1}},
      {"getattr", Tgetattr{1, 0x3fff}},
      {"setattr", Tsetattr{1, 0x7f, 0755, 1000, 1000, 12, 1, 2, 3, 4}},
      {"readdir", Treaddir{1, 0, 8192}},
      {"mkdir", Tmkdir{0, "dir", 0755, 0}},
      {"symlink", Tsymlink{0, "link", "target", 0}},
      {"mknod", Tmknod{0, "node", 020644, 1, 3, 0}},
      {"rename", Trename{1, 0, "renamed"}},
      {"renameat", Trenameat{0, "a", 0, "b"}},
      {"unlinkat", Tunlinkat{0, "a", 0}},
      {"link", Tlink{0, 1, "hard"}},
      {"readlink", Treadlink{1}},
      {"statfs", Tstatfs{0}},
      {"fsync", Tfsync{1, 0}},
      {"xattrwalk", Txattrwalk{1, 2, "user.x"}},
      {"xattrcreate", Txattrcreate{1, "user.x", 5, 0}},
      {"lock", Tlock{1, kLockWrite, 0, 0, 100, 1, "client"}},
      {"getlock", Tgetlock{1, kLockRead, 0, 100, 1, "client"}},
      {"flush", Tflush{3}},
      {"auth", Tauth{5, "user", "", 0}},
      // 9P2000 and 9P2000.u (the fuzzer decodes each input in every dialect)
      {"auth-9p2000", Tauth2000{5, "glenda", ""}},
      {"attach-9p2000", Tattach2000{0, kNoFid, "glenda", ""}},
      {"open", Topen{1, kORdwr | kOTrunc}},
      {"create-9p2000", Tcreate{1, "new", 0644, kOWrite | kORclose}},
      {"create-9p2000u", TcreateU{1, "ln", kDmSymlink | 0777, kORead, "target"}},
      {"stat", Tstat{1}},
      {"wstat-9p2000", Twstat{1, Stat(DontTouchStat())}},
      {"wstat-9p2000u", TwstatU{1, DontTouchStat()}},
      {"once", Tonce{7, Data{Frame(Tmkdir{0, "dir", 0755, 0})}}},
  };
  uint16_t tag = 1;
  std::string conversation;
  for (auto& [name, m] : msgs) {
    std::string frame;
    Encode(tag, m, frame);
    Put(root + "/codec", name, frame);
    if (name != "version" && name != "attach") conversation += frame;
    tag++;
  }
  // Sessions: after the harness's own Tversion and Tattach (fid 0).
  std::string s;
  Encode(10, Twalk{0, 1, {}}, s);
  Encode(11, Tlcreate{1, "f", 0102, 0644, 0}, s);
  Encode(12, Twrite{1, 0, Data{"data"}}, s);
  Encode(13, Tread{1, 0, 100}, s);
  Encode(14, Tclunk{1}, s);
  Encode(15, Twalk{0, 2, {"f"}}, s);
  Encode(16, Tgetattr{2, 0x3fff}, s);
  Encode(17, Twalk{2, 2, {}}, s);
  Encode(18, Tclunk{2}, s);
  Put(root + "/session", "create-write-read", s);
  // Tonce: a mkdir twice with one id, a create and a write, and what is
  // refused (a read inside, a nested Tonce, a cut frame).
  std::string o;
  Encode(10, Tonce{1, Data{Frame(Tmkdir{0, "d", 0755, 0})}}, o);
  Encode(11, Tonce{1, Data{Frame(Tmkdir{0, "d", 0755, 0})}}, o);
  Encode(12, Twalk{0, 1, {}}, o);
  Encode(13, Tonce{2, Data{Frame(Tlcreate{1, "f", 0102, 0644, 0})}}, o);
  Encode(14, Tonce{3, Data{Frame(Twrite{1, 0, Data{"data"}})}}, o);
  Encode(15, Tonce{4, Data{Frame(Tread{1, 0, 100})}}, o);
  Encode(16, Tonce{5, Data{Frame(Tonce{6, Data{Frame(Tmkdir{0, "e", 0755, 0})}})}}, o);
  Encode(17, Tonce{7, Data{Frame(Tunlinkat{0, "d", 0x200}).substr(0, 12)}}, o);
  Encode(18, Tonce{8, Data{Frame(Tunlinkat{0, "d", 0x200})}}, o);
  Put(root + "/session", "once", o);
  // The stat dialects: a new Tversion resets the harness's session into
  // 9P2000 / 9P2000.u, then create, write, stat, wstat, directory reads.
  for (const char* version : {"9P2000", "9P2000.u"}) {
    bool u = std::string(version) == "9P2000.u";
    std::string c;
    Encode(kNoTag, Tversion{65536, version}, c);
    if (u) Encode(1, Tattach{0, kNoFid, "", "", 1000}, c);
    else Encode(1, Tattach2000{0, kNoFid, "1000", ""}, c);
    Encode(2, Twalk{0, 1, {}}, c);
    if (u) Encode(3, TcreateU{1, "f", 0644, kORdwr, ""}, c);
    else Encode(3, Tcreate{1, "f", 0644, kORdwr}, c);
    Encode(4, Twrite{1, 0, Data{"data"}}, c);
    Encode(5, Tstat{1}, c);
    StatU w = DontTouchStat();
    w.mode = 0600;
    w.name = "g";
    if (u) Encode(6, TwstatU{1, w}, c);
    else Encode(6, Twstat{1, Stat(w)}, c);
    Encode(7, Tclunk{1}, c);
    Encode(8, Twalk{0, 2, {}}, c);
    Encode(9, Topen{2, kORead}, c);
    Encode(10, Tread{2, 0, 8192}, c);
    Encode(11, Tread{2, 0, 8192}, c);
    Encode(12, Tclunk{2}, c);
    if (u) {
      Encode(13, Twalk{0, 3, {}}, c);
      Encode(14, TcreateU{3, "ln", kDmSymlink | 0777, kORead, "g"}, c);
      Encode(15, Tclunk{3}, c);
    }
    Encode(16, Twalk{0, 4, {"g"}}, c);
    Encode(17, Tremove{4}, c);
    Put(root + "/session", u ? "dialect-9p2000u" : "dialect-9p2000", c);
  }
  Put(root + "/session", "every-request", conversation);
  Put(root + "/keys", "two", "# comment\nlaptop:0123456789abcdef0123456789abcdef\nphone:a text secret 16+ chars\n");
  Put(root + "/config", "sample",
      "store = /tmp/x/store.db\nlisten = unix:/tmp/x/sock\nmsize = 65536\n"
      "commit-interval-ms = 500\naccess = laptop root=/projects/x\naccess = phone read-only\n");
  return 0;
}
