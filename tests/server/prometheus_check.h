// Checks a Prometheus text exposition (format 0.0.4) line by line, as the
// metrics tests need it: every sample is `name{labels} value` with
// well-formed, escaped label values and a number; every sample's family
// has HELP and TYPE lines before it; and the samples as a map from
// `name{labels}` to value.
#pragma once

#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace muscle::test {

struct PrometheusParse {
  std::vector<std::string> problems;
  std::map<std::string, double> samples;  // "name{labels}" (as written) -> value
  std::set<std::string> families;         // names with HELP and TYPE (samples or not)
};

inline PrometheusParse ParsePrometheus(const std::string& text) {
  PrometheusParse r;
  std::set<std::string> help, type;
  std::map<std::string, std::string> types;
  auto name_ok = [](const std::string& n) {
    if (n.empty() || isdigit(static_cast<unsigned char>(n[0]))) return false;
    for (char c : n)
      if (!isalnum(static_cast<unsigned char>(c)) && c != '_' && c != ':') return false;
    return true;
  };
  size_t pos = 0, lineno = 0;
  if (text.empty() || text.back() != '\n') r.problems.push_back("text does not end with a newline");
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    lineno++;
    auto bad = [&](const std::string& why) {
      r.problems.push_back("line " + std::to_string(lineno) + ": " + why + ": " + line);
    };
    if (line.empty()) continue;
    if (line[0] == '#') {
      size_t a = line.find(' ', 2), b = a == std::string::npos ? a : line.find(' ', a + 1);
      std::string kw = line.substr(2, a - 2);
      std::string name = a == std::string::npos ? "" : line.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
      if (kw == "HELP") {
        if (!name_ok(name) || b == std::string::npos) bad("bad HELP");
        help.insert(name);
      } else if (kw == "TYPE") {
        std::string t = b == std::string::npos ? "" : line.substr(b + 1);
        if (!name_ok(name) || (t != "counter" && t != "gauge" && t != "histogram" && t != "summary" && t != "untyped"))
          bad("bad TYPE");
        if (!help.count(name)) bad("TYPE before HELP");
        type.insert(name);
        types[name] = t;
      }
      continue;
    }
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') i++;
    std::string name = line.substr(0, i);
    if (!name_ok(name)) {
      bad("bad metric name");
      continue;
    }
    std::string key = name;
    if (i < line.size() && line[i] == '{') {
      size_t start = i;
      i++;
      bool ok = true;
      while (ok && i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string::npos || !name_ok(line.substr(i, eq - i)) || eq + 1 >= line.size() ||
            line[eq + 1] != '"') {
          ok = false;
          break;
        }
        i = eq + 2;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            if (i + 1 >= line.size() || (line[i + 1] != '\\' && line[i + 1] != '"' && line[i + 1] != 'n')) {
              ok = false;
              break;
            }
            i++;
          }
          i++;
        }
        if (i >= line.size()) ok = false;
        else i++;  // the closing quote
        if (ok && i < line.size() && line[i] == ',') i++;
      }
      if (!ok || i >= line.size() || line[i] != '}') {
        bad("bad labels");
        continue;
      }
      i++;
      key = line.substr(0, i);
      (void)start;
    }
    if (i >= line.size() || line[i] != ' ') {
      bad("no space before the value");
      continue;
    }
    std::string value = line.substr(i + 1);
    char* end = nullptr;
    double v = strtod(value.c_str(), &end);
    if (value.empty() || *end) {
      bad("bad value");
      continue;
    }
    // A histogram's samples belong to the family without the suffix.
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string s = suffix;
      if (!type.count(family) && family.size() > s.size() &&
          family.compare(family.size() - s.size(), s.size(), s) == 0 &&
          types[family.substr(0, family.size() - s.size())] == "histogram")
        family = family.substr(0, family.size() - s.size());
    }
    if (!help.count(family) || !type.count(family)) bad("no HELP and TYPE before this sample");
    if (r.samples.count(key)) bad("duplicate sample");
    r.samples[key] = v;
  }
  for (const auto& name : help)
    if (type.count(name)) r.families.insert(name);
  return r;
}

}  // namespace muscle::test
