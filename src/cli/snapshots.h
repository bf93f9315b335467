// muscle snapshot / snapshots / history / diff / restore: a client of a
// running server's @ctl control file (server/control.h), over its unix
// socket (the local administrator) or, with --connect, TLS as an identity.
//
// Single-threaded, blocking; one request at a time.
#pragma once

namespace muscle::cli {

// True when argv[1] names one of these commands.
bool IsSnapshotCommand(const char* cmd);
int SnapshotMain(int argc, char** argv);  // argv[0] is the command

}  // namespace muscle::cli
