#pragma once
// Driving helpers/snapshot_writer.c from tests: it prints "SWEEP N" after each sweep over its
// region, and "page ..." lines for any page that did not hold the sweep before.
#include <gtest/gtest.h>

#include <string>

#include "test_process.hpp"

namespace e2e {

inline size_t sweeps(const std::string& text) {
  size_t n = 0;
  for (size_t at = text.find("SWEEP "); at != std::string::npos; at = text.find("SWEEP ", at + 1))
    ++n;
  return n;
}

// Whether `want` sweeps were printed after the first `skip` bytes of its output, within 30 s.
inline bool wait_sweeps(const TestProcess& p, size_t want, size_t skip) {
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string out = p.out();
    if (out.size() >= skip && sweeps(out.substr(skip)) >= want) return true;
    sleep_for(20ms);
  }
  return false;
}

// After dumps of a running writer: the original found every page it rewrote as it should be;
// then it is killed and restored from the newest generation, and two full sweeps from the
// restored state check every page against the sweep before (a page copied at another moment
// than the rest would hold another sweep).
inline void expect_writer_restores_every_page(TestProcess& p) {
  ASSERT_TRUE(wait_sweeps(p, sweeps(p.out()) + 2, 0)) << p.output();
  EXPECT_EQ(p.out().find("FAIL"), std::string::npos) << p.output();
  EXPECT_EQ(p.out().find("page "), std::string::npos) << p.output();
  p.kill_now();
  size_t cut = p.out().size();
  ASSERT_TRUE(p.restore({"--accept-changed-files"}));
  ASSERT_TRUE(wait_sweeps(p, 2, cut)) << p.output();
  EXPECT_TRUE(p.finish());
  EXPECT_EQ(p.out().find("page ", cut), std::string::npos) << p.output();
}

}  // namespace e2e
