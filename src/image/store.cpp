// The store directory: marker, generations, temporary directories, retention and the run lock.
#include "image/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <ctime>

#include "common/fs_util.hpp"
#include "common/log.hpp"
#include "image/format.hpp"
#include "image/store_internal.hpp"

namespace ckpt::image {
namespace {

namespace fs = std::filesystem;

// Directory entry names, without "." and "..".
Result<std::vector<std::string>> entries(const fs::path& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return sys_error(fmt::format("open {}", dir.string()));
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") out.emplace_back(n);
  }
  ::closedir(d);
  return out;
}

// Generation directory names, newest first.
std::vector<std::string> generation_names(const fs::path& dir) {
  std::vector<std::string> names;
  auto all = entries(dir);
  if (!all.ok()) return names;
  for (auto& n : *all)
    if (format::parse_id(n)) names.push_back(n);
  std::sort(names.rbegin(), names.rend());
  return names;
}

// Removes a directory tree without ever leaving a half-removed generation visible: it is renamed
// out of the generation namespace first.
void remove_dir(const fs::path& store, const std::string& name) {
  static_assert(format::kDelPrefix.size() > 0);
  auto hidden = store / fmt::format("{}{}-{}", format::kDelPrefix, name, getpid());
  std::error_code ec;
  if (::rename((store / name).c_str(), hidden.c_str()) < 0) return;
  (void)fsync_dir(store);
  fs::remove_all(hidden, ec);
}

// A temporary directory whose writer has gone can be locked; a live writer holds the lock.
bool writer_gone(const fs::path& tmp) {
  int fd = ::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  ScopedFd guard(fd);
  return ::flock(fd, LOCK_EX | LOCK_NB) == 0;
}

// A leftover of write_file_atomic from a process that no longer exists.
bool stale_tmp_file(std::string_view name) {
  if (!name.starts_with(".tmp.")) return false;
  auto last = name.rfind('.');
  auto prev = name.rfind('.', last - 1);
  if (last == std::string_view::npos || prev == std::string_view::npos) return false;
  int pid = std::atoi(std::string(name.substr(prev + 1, last - prev - 1)).c_str());
  return pid > 0 && ::kill(pid, 0) < 0 && errno == ESRCH;
}

void clean_leftovers(const fs::path& dir) {
  auto all = entries(dir);
  if (!all.ok()) return;
  for (auto& n : *all) {
    auto path = dir / n;
    std::error_code ec;
    if (n.starts_with(format::kDelPrefix)) {
      fs::remove_all(path, ec);
    } else if (n.starts_with(format::kTmpPrefix) && writer_gone(path)) {
      log::info("image", "removing {} left by an interrupted write", path.string());
      fs::remove_all(path, ec);
    } else if (stale_tmp_file(n)) {
      fs::remove(path, ec);
    }
  }
}

Status create_store(const fs::path& dir) {
  CKPT_TRY(make_dirs(dir, 0700));
  return write_file_atomic(dir, std::string(format::kMarkerName), as_bytes(format::kMarkerMagic),
                           0600);
}

Status check_marker(const fs::path& dir) {
  auto path = dir / format::kMarkerName;
  auto bytes = read_file(path);
  if (!bytes.ok()) {
    if (bytes.error().errnum == ENOENT)
      return errorf("{}: not a ckpt store (no {} marker)", dir.string(), format::kMarkerName);
    return bytes.error();
  }
  std::string_view text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  if (!text.starts_with("ckpt store\n"))
    return errorf("{}: not a ckpt store (bad {} marker)", path.string(), format::kMarkerName);
  if (text != format::kMarkerMagic)
    return errorf("{}: store format not supported by this ckpt", path.string());
  return {};
}

uint64_t dir_bytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

}  // namespace

int64_t detail::now_unix_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

bool is_store(const fs::path& dir) {
  return check_marker(dir).ok();
}

Result<detail::TempDir> detail::make_temp_dir(const fs::path& store) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r) r = static_cast<uint64_t>(now_unix_ns());
    auto path = store / fmt::format("{}{}-{:016x}", format::kTmpPrefix, getpid(), r);
    if (::mkdir(path.c_str(), 0700) < 0) {
      if (errno == EEXIST) continue;
      return sys_error(fmt::format("mkdir {}", path.string()));
    }
    CKPT_TRY_ASSIGN(ScopedFd fd, open_file(path, O_RDONLY | O_DIRECTORY));
    struct stat st;
    // A concurrent open() may have taken the directory for a leftover between mkdir and flock.
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0 || fstat(fd.get(), &st) < 0 || st.st_nlink == 0)
      continue;
    return TempDir{path, std::move(fd)};
  }
  return errorf("{}: cannot create a temporary generation directory", store.string());
}

Result<std::string> detail::publish(const fs::path& store, const fs::path& tmp) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    auto names = generation_names(store);
    std::optional<format::GenId> newest;
    if (!names.empty()) newest = format::parse_id(names.front());
    auto now = static_cast<uint64_t>(now_unix_ns() / 1000000000);
    std::string id = format::format_id(format::next_id(newest, now));
    auto target = store / id;
    int rc = ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE);
    // Filesystems without RENAME_NOREPLACE: a published generation is never empty, so a plain
    // rename onto it fails too.
    if (rc < 0 && errno == EINVAL) rc = ::rename(tmp.c_str(), target.c_str());
    if (rc == 0) {
      CKPT_TRY(fsync_dir(store));
      return id;
    }
    if (errno != EEXIST && errno != ENOTEMPTY)
      return sys_error(fmt::format("rename {} to {}", tmp.string(), target.string()));
  }
  return errorf("{}: no free generation id", store.string());
}

Result<Store> Store::open(const fs::path& dir, OpenOptions opts) {
  struct stat st;
  if (::stat(dir.c_str(), &st) < 0) {
    if (errno != ENOENT || !opts.create)
      return sys_error(fmt::format("open store {}", dir.string()));
    CKPT_TRY(create_store(dir));
  } else if (!S_ISDIR(st.st_mode)) {
    return errorf("{}: not a ckpt store (not a directory)", dir.string());
  } else if (opts.create && !is_store(dir)) {
    CKPT_TRY_ASSIGN(auto names, entries(dir));
    // A creator killed between mkdir and publishing the marker leaves only its temporary
    // marker: that folder is still empty as far as stores go.
    bool only_marker_leftovers = true;
    for (auto& n : names)
      if (n.rfind(".tmp.CKPT.", 0) != 0) only_marker_leftovers = false;
    if (only_marker_leftovers) {
      for (auto& n : names) ::unlink((dir / n).c_str());
      CKPT_TRY(create_store(dir));
    }
  }
  CKPT_TRY(check_marker(dir));
  std::error_code ec;
  auto abs = fs::absolute(dir, ec).lexically_normal();
  if (!abs.has_filename()) abs = abs.parent_path();
  clean_leftovers(abs);
  return Store(abs);
}

Result<std::unique_ptr<GenerationWriter>> Store::begin_generation(WriteOptions opts) {
  return detail::make_writer(dir_, opts);
}

std::vector<GenerationInfo> Store::list(std::vector<Problem>* problems) const {
  std::vector<GenerationInfo> out;
  for (auto& name : generation_names(dir_)) {
    auto gen = read_generation(dir_ / name);
    if (gen.ok()) {
      out.push_back(std::move(*gen));
    } else if (problems) {
      problems->push_back({name, gen.error().message});
    }
  }
  return out;
}

Result<GenerationInfo> Store::latest_valid(std::vector<Problem>* skipped) const {
  std::vector<Problem> problems;
  auto gens = list(&problems);
  Result<GenerationInfo> found = errorf("store {}: no valid generation", dir_.string());
  for (auto& gen : gens) {
    Status st = verify(gen);
    if (st.ok()) {
      found = gen;
      break;
    }
    problems.push_back({gen.id, st.error().message});
  }
  if (!found.ok() && !problems.empty())
    found = errorf("store {}: no valid generation ({} corrupt or incomplete, newest: {})",
                   dir_.string(), problems.size(), problems.front().message);
  if (skipped) {
    // Only those newer than the one returned were skipped; keep newest first.
    std::string limit = found.ok() ? found->id : std::string();
    for (auto& p : problems)
      if (p.id > limit) skipped->push_back(p);
    std::sort(skipped->begin(), skipped->end(),
              [](const Problem& a, const Problem& b) { return a.id > b.id; });
  }
  if (found.ok()) log::debug("image", "latest valid generation: {}", found->id);
  return found;
}

Result<GenerationInfo> Store::find(std::string_view id) const {
  if (!format::parse_id(id))
    return errorf("store {}: '{}' is not a generation id", dir_.string(), id);
  auto path = dir_ / id;
  if (::access(path.c_str(), F_OK) < 0)
    return sys_error(fmt::format("store {}: generation {}", dir_.string(), id));
  return read_generation(path);
}

Result<RetentionReport> Store::apply_retention(const Retention& r) const {
  RetentionReport report;
  auto names = generation_names(dir_);
  std::string protect;
  auto newest_valid = latest_valid();
  if (newest_valid.ok()) protect = newest_valid->id;
  size_t kept = protect.empty() ? 0 : 1;
  uint64_t bytes = protect.empty() ? 0 : dir_bytes(dir_ / protect);
  bool full = false;
  for (auto& name : names) {
    if (name == protect) continue;
    uint64_t size = dir_bytes(dir_ / name);
    if (!full && (!r.keep || kept < *r.keep) && (!r.max_bytes || bytes + size <= *r.max_bytes)) {
      ++kept;
      bytes += size;
      continue;
    }
    full = true;  // once over a limit, everything older goes too
    remove_dir(dir_, name);
    report.removed.push_back(name);
  }
  return report;
}

Result<StoreLock> Store::lock(std::string_view owner) const {
  auto path = dir_ / format::kLockName;
  CKPT_TRY_ASSIGN(ScopedFd fd, open_file(path, O_RDWR | O_CREAT, 0600));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0) {
    if (errno != EWOULDBLOCK) return sys_error(fmt::format("lock {}", path.string()));
    char buf[256] = {};
    ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
    auto sp = holder.find(' ');
    if (!holder.empty() && holder.back() == '\n') holder.pop_back();
    if (sp == std::string::npos)
      return make_error(fmt::format("store {} is in use by another process", dir_.string()),
                        EWOULDBLOCK);
    return make_error(fmt::format("store {} is in use by pid {} ({})", dir_.string(),
                                  holder.substr(0, sp), holder.substr(sp + 1)),
                      EWOULDBLOCK);
  }
  std::string text = fmt::format("{} {}\n", getpid(), owner);
  if (::ftruncate(fd.get(), 0) < 0) return sys_error(fmt::format("truncate {}", path.string()));
  CKPT_TRY(pwrite_all(fd.get(), as_bytes(text), 0, path.string()));
  return StoreLock(std::move(fd));
}

}  // namespace ckpt::image
