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
#include <map>
#include <set>

#include "common/fs_util.hpp"
#include "common/log.hpp"
#include "image/chain.hpp"
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

Status write_marker(const fs::path& dir) {
  return write_file_atomic(dir, std::string(format::kMarkerName), as_bytes(format::kMarkerMagic),
                           0600);
}

Status create_store(const fs::path& dir) {
  CKPT_TRY(make_dirs(dir, 0700));
  return write_marker(dir);
}

// A marker of a later store format: "ckpt store\nformat N\n" with another N.
bool future_marker(std::string_view text) {
  constexpr std::string_view head = "ckpt store\nformat ";
  if (!text.starts_with(head) || !text.ends_with("\n")) return false;
  auto num = text.substr(head.size(), text.size() - head.size() - 1);
  return !num.empty() && num.find_first_not_of("0123456789") == std::string_view::npos;
}

// The generations are the store's substance: one whose manifest reads (manifests carry their
// own checksums) tells that the directory is a store even when its marker was damaged or lost.
bool has_readable_generation(const fs::path& dir, Trust trust) {
  for (auto& name : generation_names(dir))
    if (read_generation(dir / name, trust).ok()) return true;
  return false;
}

// The closest directory of `dir`'s path that exists ("." for a relative path none of whose
// components exist).
fs::path nearest_existing(const fs::path& dir) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  while (!p.empty() && !fs::exists(p, ec) && p != p.parent_path()) p = p.parent_path();
  return p.empty() ? fs::path(".") : p;
}

enum class Marker { ok, missing, damaged, future };

Result<Marker> read_marker(const fs::path& dir, Trust trust) {
  auto path = dir / format::kMarkerName;
  auto fd = detail::open_store_file(path, trust);
  if (!fd.ok()) {
    if (fd.error().errnum == ENOENT) return Marker::missing;
    return fd.error();
  }
  char buf[64];
  ssize_t n = ::pread(fd->get(), buf, sizeof buf, 0);
  if (n < 0) return sys_error(fmt::format("read {}", path.string()));
  std::string_view text(buf, static_cast<size_t>(n));
  if (text == format::kMarkerMagic) return Marker::ok;
  return future_marker(text) ? Marker::future : Marker::damaged;
}

Status check_marker(const fs::path& dir, Trust trust) {
  CKPT_TRY_ASSIGN(Marker m, read_marker(dir, trust));
  if (m == Marker::ok) return {};
  if (has_readable_generation(dir, trust)) {
    log::warn("image", "{}: the {} marker is {}; recognized as a store by its generations",
              dir.string(), format::kMarkerName, m == Marker::missing ? "missing" : "damaged");
    return {};
  }
  auto path = dir / format::kMarkerName;
  if (m == Marker::missing)
    return make_error(
        fmt::format("{}: not a ckpt store (no {} marker)", dir.string(), format::kMarkerName),
        ENOENT);
  if (m == Marker::future)
    return errorf("{}: store format not supported by this ckpt", path.string());
  return errorf("{}: not a ckpt store (bad {} marker)", path.string(), format::kMarkerName);
}

// Whether a directory opened for writing is (or may become) a store, and what it lacks.
enum class Fix { none, marker, not_a_store };

Result<Fix> needed_fix(const fs::path& dir, Trust trust) {
  CKPT_TRY_ASSIGN(Marker m, read_marker(dir, trust));
  if (m == Marker::ok) return Fix::none;
  if (has_readable_generation(dir, trust)) return Fix::marker;
  if (m != Marker::missing) return Fix::not_a_store;  // check_marker names it
  CKPT_TRY_ASSIGN(auto names, entries(dir));
  // A creator killed between mkdir and publishing the marker leaves only its temporary
  // marker: that folder is still empty as far as stores go.
  for (auto& n : names)
    if (n.rfind(".tmp.CKPT.", 0) != 0) return Fix::not_a_store;
  for (auto& n : names) ::unlink((dir / n).c_str());
  return Fix::marker;
}

// A directory about to receive images: if it is (or may become) a store, it must be ours and
// becomes 0700 whatever it was; an empty one or one whose marker was damaged or lost gets it.
Status prepare_for_writing(const fs::path& dir, Trust trust) {
  ScopedFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) < 0) return sys_error(fmt::format("open {}", dir.string()));
  bool mine = st.st_uid == ::geteuid();
  if (!mine) CKPT_TRY(detail::check_trusted(st, dir, trust));
  CKPT_TRY_ASSIGN(Fix fix, needed_fix(dir, trust));
  if (fix == Fix::not_a_store) return {};  // left as it was; check_marker says why
  if (mine && (st.st_mode & 07777) != 0700 && ::fchmod(fd.get(), 0700) < 0)
    return sys_error(fmt::format("chmod {}", dir.string()));
  return fix == Fix::marker ? write_marker(dir) : Status{};
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

// The generations among `doomed` that a generation staying in the store needs as an ancestor
// (image/chain.hpp): an incremental generation is useless without them.
std::set<std::string> needed_parents(const Store& store, const std::vector<std::string>& doomed) {
  std::set<std::string> gone(doomed.begin(), doomed.end()), needed;
  std::map<std::string, std::string> parent_of;
  for (auto& g : store.list())
    if (is_incremental(g)) parent_of[g.id] = g.labels.at(std::string(kParentLabel));
  for (auto& [id, parent] : parent_of) {
    if (gone.count(id)) continue;
    // Walks up from each kept generation; parents are older, so the walk ends.
    for (std::string at = parent; !at.empty() && needed.insert(at).second;) {
      auto up = parent_of.find(at);
      at = up == parent_of.end() || up->second >= at ? std::string() : up->second;
    }
  }
  std::set<std::string> out;
  for (auto& n : needed)
    if (gone.count(n)) out.insert(n);
  return out;
}

}  // namespace

int64_t detail::now_unix_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

bool is_store(const fs::path& dir) {
  return check_marker(dir, Trust{.any_owner = true}).ok();
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
    // mkdir's mode went through the umask.
    if (::fchmod(fd.get(), 0700) < 0) return sys_error(fmt::format("chmod {}", path.string()));
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
  // An empty name would mean the current directory to every call below.
  if (dir.empty()) return make_error("open store: the directory name is empty", EINVAL);
  struct stat st;
  if (::stat(dir.c_str(), &st) < 0) {
    if (errno != ENOENT || !opts.create)
      return sys_error(fmt::format("open store {}", dir.string()));
    // Checked before anything is made: a store created where another user can swap it.
    CKPT_TRY(detail::check_dirs_above(dir, nearest_existing(dir), opts.trust));
    CKPT_TRY(create_store(dir));
  } else if (!S_ISDIR(st.st_mode)) {
    return errorf("{}: not a ckpt store (not a directory)", dir.string());
  }
  std::error_code ec;
  fs::path real = fs::canonical(dir, ec);
  if (ec) return sys_error(ec.value(), fmt::format("open store {}", dir.string()));
  if (opts.create) CKPT_TRY(prepare_for_writing(real, opts.trust));
  CKPT_TRY(check_trusted_path(real, opts.trust));
  CKPT_TRY(check_marker(real, opts.trust));
  clean_leftovers(real);
  return Store(real, opts.trust);
}

Result<std::unique_ptr<GenerationWriter>> Store::begin_generation(WriteOptions opts) {
  return detail::make_writer(dir_, opts);
}

std::vector<GenerationInfo> Store::list(std::vector<Problem>* problems) const {
  std::vector<GenerationInfo> out;
  for (auto& name : generation_names(dir_)) {
    auto gen = read_generation(dir_ / name, trust_);
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
  return read_generation(path, trust_);
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
  std::vector<std::string> doomed;
  for (auto& name : names) {
    if (name == protect) continue;
    uint64_t size = dir_bytes(dir_ / name);
    if (!full && (!r.keep || kept < *r.keep) && (!r.max_bytes || bytes + size <= *r.max_bytes)) {
      ++kept;
      bytes += size;
      continue;
    }
    full = true;  // once over a limit, everything older goes too
    doomed.push_back(name);
  }
  std::set<std::string> needed = needed_parents(*this, doomed);
  for (auto& name : doomed) {
    if (needed.count(name)) continue;
    remove_dir(dir_, name);
    report.removed.push_back(name);
  }
  return report;
}

Result<StoreLock> Store::lock(std::string_view owner) const {
  auto path = dir_ / format::kLockName;
  // Not a FIFO or a link to another file: the lock file's content is written to.
  CKPT_TRY_ASSIGN(ScopedFd fd, open_file(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0600));
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return sys_error(fmt::format("stat {}", path.string()));
  if (!S_ISREG(st.st_mode))
    return errorf("{}: {}, where a regular file belongs", path.string(), file_kind(st.st_mode));
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
