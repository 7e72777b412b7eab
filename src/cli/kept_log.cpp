#include "cli/kept_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <vector>

#include "ckpt/version.hpp"
#include "common/fs_util.hpp"
#include "common/log.hpp"

namespace ckpt::cli {
namespace {

namespace fs = std::filesystem;

void write_line(int fd, log::Level level, std::string_view text) {
  std::string line = log::format_line("cli", level, text);
  (void)!::write(fd, line.data(), line.size());
}

std::string timestamp() {
  time_t now = ::time(nullptr);
  tm t{};
  gmtime_r(&now, &t);
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &t);
  return buf;
}

// Keeps the newest kMaxLogs files: a store that fails every minute must not fill the disk.
void prune(const fs::path& dir) {
  std::vector<std::pair<fs::file_time_type, fs::path>> logs;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::end(it); it.increment(ec)) {
    if (it->path().extension() != ".log") continue;
    std::error_code ec2;
    auto when = it->last_write_time(ec2);
    if (!ec2) logs.emplace_back(when, it->path());
  }
  if (logs.size() <= KeptLog::kMaxLogs) return;
  std::sort(logs.begin(), logs.end(), [](auto& a, auto& b) { return a.first > b.first; });
  for (size_t i = KeptLog::kMaxLogs; i < logs.size(); ++i) fs::remove(logs[i].second, ec);
}

}  // namespace

KeptLog KeptLog::start(const fs::path& store_dir, std::string_view kind, std::string_view command) {
  KeptLog out;
  auto dir = store_dir / "logs";
  if (!make_dirs(dir, 0700).ok()) return out;
  auto path = dir / fmt::format("{}-{}-{}.log", kind, timestamp(), ::getpid());
  auto fd = open_file(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600);
  if (!fd.ok()) {
    log::debug("cli", "no kept log: {}", fd.error().message);
    return out;
  }
  out.fd_ = std::move(*fd);
  out.path_ = path;
  utsname u{};
  ::uname(&u);
  write_line(out.fd_.get(), log::Level::info,
             fmt::format("ckpt {} on Linux {} ({}), uid {}: {}", CKPT_VERSION_STRING, u.release,
                         u.machine, ::geteuid(), command));
  log::set_capture(out.fd_.get(), log::Level::debug);
  return out;
}

void KeptLog::discard() {
  if (!fd_) return;
  log::set_capture(-1);
  fd_.reset();
  ::unlink(path_.c_str());
  path_.clear();
}

Error KeptLog::keep(const Error& error) {
  if (!fd_) return error;
  log::set_capture(-1);
  write_line(fd_.get(), log::Level::error, error.message);
  fd_.reset();
  prune(path_.parent_path());
  return Error{error.errnum, fmt::format("{} (log: {})", error.message, path_.string())};
}

}  // namespace ckpt::cli
