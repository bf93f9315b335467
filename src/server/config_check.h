// `musclefs serve --check-config`: validates what a server would start
// with (musclefs.conf and flags, already parsed into a Config; listen
// addresses; the keys file; access rules) without opening the store or
// binding anything, like `nginx -t`.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "server/config.h"

namespace muscle::server {

struct ConfigReport {
  std::vector<std::string> problems;  // each stops the server from starting
  std::vector<std::string> notes;     // what it would do, and warnings
  std::set<std::string> created;      // directories the server would create
  bool ok() const { return problems.empty(); }
};

ConfigReport CheckConfig(const Config& c);

}  // namespace muscle::server
