// A temporary directory for unit tests that do not need a server.
#pragma once

#include <cstdlib>
#include <stdexcept>
#include <string>

struct TempBase {
  TempBase() {
    char tmpl[] = "/tmp/musclefs-unit-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    path = tmpl;
  }
  ~TempBase() {
    std::string cmd = "rm -rf '" + path + "'";
    if (system(cmd.c_str()) != 0) {
    }
  }
  std::string path;
};
