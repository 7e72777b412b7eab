#include "cli/progress.hpp"

#include <unistd.h>

#include <cmath>

#include <fmt/format.h>

namespace ckpt::cli {
namespace {

constexpr auto kQuietStart = std::chrono::milliseconds(500);
constexpr auto kRedrawEvery = std::chrono::milliseconds(100);

}  // namespace

std::string human_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 10) return fmt::format("{:.1f}s", s);
  auto whole = static_cast<uint64_t>(std::llround(s));
  if (whole < 60) return fmt::format("{}s", whole);
  if (whole < 3600) return fmt::format("{}m{:02}s", whole / 60, whole % 60);
  return fmt::format("{}h{:02}m", whole / 3600, whole / 60 % 60);
}

std::string format_progress(std::string_view what, uint64_t done, uint64_t total, double elapsed) {
  double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  std::string rate_text = rate > 0 ? human_bytes(rate) + "/s" : "? B/s";
  if (total == 0)
    return fmt::format("{} {:>10} / ?  {}", what, human_bytes(static_cast<double>(done)),
                       rate_text);
  // The engine's estimate of the total can fall short of what it ends up writing.
  uint64_t shown_total = std::max(total, done);
  auto percent =
      static_cast<unsigned>(100.0 * static_cast<double>(done) / static_cast<double>(shown_total));
  std::string eta =
      rate > 0 ? human_duration(static_cast<double>(shown_total - done) / rate) : std::string("?");
  return fmt::format("{} {:>10} / {}  {:3}%  {}  ETA {}", what,
                     human_bytes(static_cast<double>(done)),
                     human_bytes(static_cast<double>(shown_total)), percent, rate_text, eta);
}

Progress::Progress(std::string what, int fd, bool force)
    : what_(std::move(what)), fd_(fd), active_(force || ::isatty(fd) == 1) {}

void Progress::update(uint64_t done, uint64_t total) {
  if (!active_) return;
  auto now = Clock::now();
  if (now - start_ < kQuietStart || now - last_draw_ < kRedrawEvery) return;
  last_draw_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  // \r and "erase to the end of the line": the new text may be shorter than the old.
  std::string line = "\r" + format_progress(what_, done, total, elapsed) + "\x1b[K";
  (void)!::write(fd_, line.data(), line.size());
  drawn_ = true;
}

void Progress::finish() {
  // The dump draws from its own forked process, so this one cannot know whether a line is
  // there: past the quiet start, clear it anyway (harmless on a terminal).
  if (!drawn_ && !(active_ && Clock::now() - start_ >= kQuietStart)) return;
  constexpr std::string_view clear = "\r\x1b[K";
  (void)!::write(fd_, clear.data(), clear.size());
  drawn_ = false;
}

std::function<void(uint64_t, uint64_t)> Progress::callback() {
  if (!active_) return {};
  return [this](uint64_t done, uint64_t total) { update(done, total); };
}

}  // namespace ckpt::cli
