#include "supervisor/policy.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstring>

#include <fmt/format.h>

namespace ckpt::supervisor {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<int> parse_int(std::string_view s) {
  if (s.empty() || s.size() > 9) return std::nullopt;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::optional<int> parse_signal(std::string_view word) {
  if (auto n = parse_int(word)) {
    if (*n > 0 && *n < NSIG) return n;
    return std::nullopt;
  }
  std::string name = lower(word);
  if (name.starts_with("sig")) name = name.substr(3);
  for (int sig = 1; sig < NSIG; ++sig) {
    const char* abbrev = sigabbrev_np(sig);
    if (abbrev && lower(abbrev) == name) return sig;
  }
  return std::nullopt;
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

}  // namespace

ExitStatus ExitStatus::from_wait(int wait_status) {
  if (WIFSIGNALED(wait_status)) return {true, WTERMSIG(wait_status)};
  return {false, WEXITSTATUS(wait_status)};
}

std::string ExitStatus::describe() const {
  return signaled ? fmt::format("killed by {}", signal_name(code))
                  : fmt::format("exit status {}", code);
}

Result<RestartRule> RestartRule::parse(std::string_view spec) {
  RestartRule rule;
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t comma = std::min(spec.find(',', pos), spec.size());
    std::string word = lower(spec.substr(pos, comma - pos));
    pos = comma + 1;
    if (word == "any") {
      rule.any_exit_ = rule.any_signal_ = true;
    } else if (word == "exit") {
      rule.any_exit_ = true;
    } else if (word == "signal") {
      rule.any_signal_ = true;
    } else if (word.starts_with("exit=")) {
      auto n = parse_int(std::string_view(word).substr(5));
      if (!n || *n == 0 || *n > 255)
        return errorf("--restart-on: '{}' is not an exit code from 1 to 255", word);
      rule.exits_.insert(*n);
    } else if (auto sig = parse_signal(word)) {
      rule.signals_.insert(*sig);
    } else {
      return errorf(
          "--restart-on: unknown word '{}' (use any, exit, exit=N, signal or a signal name)", word);
    }
  }
  return rule;
}

bool RestartRule::is_crash(const ExitStatus& st) const {
  if (st.signaled) return any_signal_ || signals_.count(st.code) > 0;
  if (st.code == 0) return false;
  return any_exit_ || exits_.count(st.code) > 0;
}

std::string Origin::describe() const {
  return generation ? fmt::format("generation {}", *generation) : "a fresh start";
}

void CrashPolicy::started(const Origin& origin, Seconds now) {
  if (lives_++ > 0) ++restarts_;
  origin_ = origin;
  life_start_ = now;
  life_generations_.clear();
  note(fmt::format("{:.1f}s: started from {}", now.count(), origin.describe()));
}

void CrashPolicy::checkpointed(const std::string& generation) {
  known_.insert(generation);
  life_generations_.push_back(generation);
}

CrashPolicy::Decision CrashPolicy::exited(const ExitStatus& st, Seconds now, bool stop_requested) {
  Seconds uptime = now - life_start_;
  note(fmt::format("{:.1f}s: {} after {:.1f}s", now.count(), st.describe(), uptime.count()));
  if (stop_requested || !cfg_.rule.is_crash(st)) return {Action::finish, st.shell_code(), {}};
  if (uptime < cfg_.min_uptime) {
    int n = ++quick_crashes_[origin_.generation.value_or("")];
    if (n > cfg_.max_retries) {
      // Falling back: what this short life saved may hold the state that keeps crashing.
      for (auto& g : life_generations_) dropped_.insert(g);
      note(fmt::format("{} crashed {} times within {:.1f}s: not used again", origin_.describe(), n,
                       cfg_.min_uptime.count()));
      if (origin_.generation) dropped_.insert(*origin_.generation);
    }
  }
  if (restarts_ >= cfg_.max_restarts) {
    return {Action::give_up, st.shell_code(),
            fmt::format("giving up after {} restarts (--max-restarts {})", restarts_,
                        cfg_.max_restarts)};
  }
  return {Action::recover, st.shell_code(), {}};
}

bool CrashPolicy::excluded(const std::string& generation) const {
  return !known_.count(generation) || dropped_.count(generation);
}

std::optional<Origin> CrashPolicy::next_origin(const std::vector<std::string>& available) const {
  for (auto& g : available)
    if (!excluded(g)) return Origin{g};
  auto fresh = quick_crashes_.find("");
  if (fresh != quick_crashes_.end() && fresh->second > cfg_.max_retries) return std::nullopt;
  return Origin{};
}

std::string CrashPolicy::report(std::string_view reason) const {
  std::string out(reason);
  out += "; history:";
  if (history_dropped_ > 0) out += fmt::format("\n  ({} earlier events)", history_dropped_);
  for (auto& line : history_) out += "\n  " + line;
  return out;
}

void CrashPolicy::note(std::string line) {
  if (history_.size() == kMaxHistory) {
    history_.erase(history_.begin());
    ++history_dropped_;
  }
  history_.push_back(std::move(line));
}

void CrashPolicy::forget(const std::vector<std::string>& removed) {
  for (auto& g : removed) {
    known_.erase(g);
    dropped_.erase(g);
    quick_crashes_.erase(g);
    std::erase(life_generations_, g);
  }
}

size_t CrashPolicy::remembered() const {
  return known_.size() + dropped_.size() + quick_crashes_.size() + life_generations_.size();
}

void CrashPolicy::unusable(const std::string& generation, std::string_view reason) {
  dropped_.insert(generation);
  note(fmt::format("generation {} skipped: {}", generation, reason));
}

}  // namespace ckpt::supervisor
