// Kernel feature probes (this machine has everything except soft-dirty) and `ckpt check`.
#include <sys/wait.h>

#include <cstdio>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "proc/kernel_features.hpp"

namespace ckpt::proc {
namespace {

void expect_ok(const FeatureProbe& p) {
  EXPECT_TRUE(p.ok) << p.name << ": " << p.detail;
}

TEST(KernelFeatures, PtraceProbesPass) {
  expect_ok(probe_ptrace_seize());
  expect_ok(probe_ptrace_xstate());
  expect_ok(probe_ptrace_sigmask());
  expect_ok(probe_ptrace_peeksiginfo());
  expect_ok(probe_ptrace_rseq());
}

TEST(KernelFeatures, ProcessAndMemoryProbesPass) {
  expect_ok(probe_process_vm());
  expect_ok(probe_clone3_set_tid());
  expect_ok(probe_pidfd_getfd());
  expect_ok(probe_pagemap_scan());
  expect_ok(probe_prctl_mm_map());
  expect_ok(probe_prctl_tid_address());
  expect_ok(probe_kcmp());
  expect_ok(probe_memfd_create());
  expect_ok(probe_userfaultfd());
  expect_ok(probe_ns_last_pid());
}

TEST(KernelFeatures, TimerRestoreProbesPass) {
  expect_ok(probe_timer_restore_ids());
  expect_ok(probe_timerfd_set_ticks());
}

// Root on a kernel with BTF (this machine): dumps read VmFlags without smaps' page walk.
TEST(KernelFeatures, TheBpfVmaIteratorIsOptionalAndPresentForRoot) {
  ASSERT_EQ(geteuid(), 0u);
  FeatureProbe p = probe_bpf_vma_iter();
  EXPECT_FALSE(p.essential);
  expect_ok(p);
}

TEST(KernelFeatures, SoftDirtyIsOptionalAndAbsentHere) {
  FeatureProbe p = probe_soft_dirty();
  EXPECT_FALSE(p.essential);
  EXPECT_FALSE(p.ok);
  EXPECT_NE(p.detail.find("bit 55"), std::string::npos) << p.detail;
}

TEST(KernelFeatures, AllProbesHaveDistinctNamesAndEssentialOnesPass) {
  auto probes = probe_kernel_features();
  EXPECT_EQ(probes.size(), 19u);
  std::set<std::string> names;
  for (const auto& p : probes) {
    names.insert(p.name);
    if (p.essential) expect_ok(p);
  }
  EXPECT_EQ(names.size(), probes.size());
}

struct CommandOutput {
  int exit_code;
  std::string out;
};

CommandOutput run_cli(const std::string& args) {
  std::string cmd = std::string(CKPT_CLI_PATH) + " " + args + " 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  int status = pclose(f);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(CheckCommand, ExitsZeroAndListsEveryFeature) {
  auto r = run_cli("check");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("ptrace_seize"), std::string::npos);
  EXPECT_NE(r.out.find("clone3_set_tid"), std::string::npos);
  auto line = r.out.substr(r.out.find("soft_dirty"));
  EXPECT_TRUE(line.substr(0, line.find('\n')).find("MISSING") != std::string::npos) << line;
}

TEST(CheckCommand, JsonSaysUsableAndMarksEssentials) {
  auto r = run_cli("check --json");
  EXPECT_EQ(r.exit_code, 0);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["usable"], true);
  bool saw_essential = false;
  for (const auto& f : j["features"]) {
    if (f["name"] == "soft_dirty") {
      EXPECT_EQ(f["ok"], false);
    }
    if (f["essential"] == true) {
      saw_essential = true;
      EXPECT_EQ(f["ok"], true) << f.dump();
    }
  }
  EXPECT_TRUE(saw_essential);
}

TEST(CheckCommand, UnknownOptionIsAUsageError) {
  EXPECT_EQ(run_cli("check --no-such-option").exit_code, 2);
}

}  // namespace
}  // namespace ckpt::proc
