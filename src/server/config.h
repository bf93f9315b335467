// Command-line and config-file settings of `musclefs`.
//
// The base directory is --base, else $MUSCLE_BASE, else $HOME/lib/muscle.
// An optional config file $BASE/musclefs.conf holds "key = value" lines
// (keys: store, listen, keys, access, allow-plaintext-network, metrics, msize,
// commit-interval-ms, store-readers, handshake-timeout-ms, max-failed-handshakes,
// tls-ticket-lifetime); a flag given on the command line always overrides
// it (whatever its value), any --listen on the command line replaces the
// file's listen lines, and --access replaces the file's rule for that
// identity. Without any listen, only unix:$BASE/musclefs.sock is opened.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "server/server.h"

namespace muscle::server {

struct Config {
  std::string command;  // "serve", "check", "gc", "upgrade", "init", "key", "help"
  // init --encrypt: make an encrypted store; --unattended: its key file (or
  // key add's new one) holds the key without a passphrase.
  bool encrypt = false;
  bool unattended = false;
  // key add PATH | key remove PATH
  std::vector<std::string> operands;
  std::string base;
  ServerOptions server;
  bool trace = false;
  // serve --check-config: validate and exit (server/config_check.h).
  bool check_config = false;
  // check, gc, upgrade, restore-from: progress on stderr (common/progress.h)
  // forced on (--progress, 1), off (--no-progress, -1), or when stderr is
  // a terminal (0).
  int progress = 0;
};

// Parses argv (after the program name). Errors name the flag or the
// file:line at fault and say how to fix it.
Result<Config> ParseConfig(const std::vector<std::string>& args);
std::string DefaultBase();
const char* Usage();
// One line per plain-TCP listener saying who can reach it, for the
// startup log (plain 9P has no authentication).
std::vector<std::string> ListenerWarnings(const std::vector<transport::Endpoint>& eps);
// The mount commands a user can type for the bound endpoints.
std::vector<std::string> MountHints(const std::vector<transport::Endpoint>& eps,
                                    uint32_t msize);

}  // namespace muscle::server
