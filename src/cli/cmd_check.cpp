// `ckpt check`: does this kernel offer what checkpoint/restore needs?
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "proc/kernel_features.hpp"

namespace ckpt::cli {
namespace {

void print_text(const std::vector<proc::FeatureProbe>& probes) {
  for (const auto& p : probes) {
    std::string line = fmt::format("{:<24} {:<8} {:<10} ", p.name, p.ok ? "ok" : "MISSING",
                                   p.essential ? "" : "(optional)");
    line += p.detail;
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::fputs((line + "\n").c_str(), stdout);
  }
}

void print_json(const std::vector<proc::FeatureProbe>& probes, bool usable) {
  nlohmann::json features = nlohmann::json::array();
  for (const auto& p : probes)
    features.push_back(
        {{"name", p.name}, {"essential", p.essential}, {"ok", p.ok}, {"detail", p.detail}});
  nlohmann::json out = {{"usable", usable}, {"features", features}};
  std::fputs((out.dump(2) + "\n").c_str(), stdout);
}

int run_check(bool json) {
  auto probes = proc::probe_kernel_features();
  bool usable = true;
  for (const auto& p : probes) usable = usable && (p.ok || !p.essential);
  if (json) {
    print_json(probes, usable);
  } else {
    print_text(probes);
    if (!usable) print_error("this kernel lacks features checkpoint/restore needs");
  }
  return usable ? kExitOk : kExitFailed;
}

const CommandRegistrar registrar{CommandDef{
    30, [](CLI::App& app, int* exit_code) {
      auto* cmd = app.add_subcommand("check", "Check that this kernel supports checkpoint/restore");
      auto json = std::make_shared<bool>(false);
      cmd->add_flag("--json", *json, "Print the result as JSON");
      cmd->callback([exit_code, json] { *exit_code = run_check(*json); });
    }}};

}  // namespace
}  // namespace ckpt::cli
