#pragma once
// Parsing the counter program's output: the numbers it printed between READY and PASS.
#include <sstream>
#include <string>
#include <vector>

namespace e2e {

inline std::vector<long> counter_values(const std::string& text) {
  std::vector<long> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l.empty() || l.find_first_not_of("0123456789") != std::string::npos) continue;
    out.push_back(std::stol(l));
  }
  return out;
}

// "" when the values are start, start+1, ...; else where the sequence breaks.
inline std::string sequence_problem(const std::vector<long>& v, long start) {
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] != start + static_cast<long>(i))
      return "value #" + std::to_string(i) + " is " + std::to_string(v[i]) + ", want " +
             std::to_string(start + static_cast<long>(i)) +
             (i ? " (after " + std::to_string(v[i - 1]) + ")" : "");
  return "";
}

}  // namespace e2e
