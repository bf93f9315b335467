// The @ctl control file: what `muscle snapshot`, `snapshots`, `history`,
// `diff`, `restore` and `snapshot prune` send to a running server.
//
// Protocol: each write to a control file is one command, its words
// separated by NUL bytes (so paths may hold any other byte); reading the
// file from offset 0 then returns the answer: a first line "ok" or
// "error ENAME: message", then one line per result with tab-separated
// fields, in which tab, newline and backslash are escaped as \t, \n, \\.
// (Grammar and fields in musclefs(8), CONTROL.)
//
// Access: each control file carries the access rule of the client that
// attached it (auth/access_rule.h): snapshot (may take, prune and restore
// snapshots), read_only, and the confining root. A confined identity names
// paths below its root and sees only that subtree in every snapshot.
//
// Threading: runs on the store worker thread (the writer's), from
// Store::Write on a control file.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "store/store.h"

namespace muscle::server {

// `metrics`, if set, adds the server's figures to the status answer
// (server/metrics.h: connections, identities, latency, the store).
class Metrics;
std::string RunControl(store::Store& s, const auth::AccessRule& rule, std::string_view command,
                       Metrics* metrics = nullptr);

// For clients: the words of a command, joined as the protocol wants, and
// an answer's lines split into fields (escapes undone).
std::string ControlCommand(const std::vector<std::string>& words);
std::vector<std::vector<std::string>> ControlFields(std::string_view answer);

}  // namespace muscle::server
