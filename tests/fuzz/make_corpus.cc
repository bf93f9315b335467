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
  Put(root + "/session", "every-request", conversation);
  Put(root + "/keys", "two", "# comment\nlaptop:0123456789abcdef0123456789abcdef\nphone:a text secret 16+ chars\n");
  Put(root + "/config", "sample",
      "store = /tmp/x/store.db\nlisten = unix:/tmp/x/sock\nmsize = 65536\n"
      "commit-interval-ms = 500\naccess = laptop root=/projects/x\naccess = phone read-only\n");
  return 0;
}
