// muscle bench: a 9P2000.L load generator (see bench.cc and `muscle bench
// --help`).
#pragma once

namespace muscle::bench {
int BenchMain(int argc, char** argv);
}
