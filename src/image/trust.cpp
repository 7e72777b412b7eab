// Who may have written a store: the owner and mode checks that keep a restore from running an
// image planted by another user (docs/security.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs_util.hpp"
#include "image/store_internal.hpp"

namespace ckpt::image {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kHow = "pass --trust-store to accept it";

// Who else may write, in words, or empty when no one else may.
std::string other_writers(mode_t mode) {
  bool group = mode & S_IWGRP, others = mode & S_IWOTH;
  if (group && others) return "its group and all users";
  if (group) return "its group";
  if (others) return "all users";
  return {};
}

}  // namespace

Status detail::check_trusted(const struct stat& st, const fs::path& path, Trust trust) {
  if (trust.any_owner) return {};
  uid_t me = ::geteuid();
  if (st.st_uid != me && st.st_uid != 0)
    return make_error(fmt::format("{}: owned by uid {}, not by you (uid {}) or root: another "
                                  "user could have planted what a restore would run ({})",
                                  path.string(), st.st_uid, me, kHow),
                      EPERM);
  std::string who = other_writers(st.st_mode);
  if (!who.empty())
    return make_error(fmt::format("{}: writable by {} (mode {:04o}): anyone of them could have "
                                  "planted what a restore would run ({})",
                                  path.string(), who, st.st_mode & 07777, kHow),
                      EPERM);
  return {};
}

Result<ScopedFd> detail::open_store_file(const fs::path& path, Trust trust) {
  CKPT_TRY_ASSIGN(ScopedFd fd, open_regular_file(path));
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return sys_error(fmt::format("stat {}", path.string()));
  CKPT_TRY(check_trusted(st, path, trust));
  return fd;
}

Status detail::check_store_dir(const fs::path& dir, Trust trust) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) < 0) return sys_error(fmt::format("stat {}", dir.string()));
  if (!S_ISDIR(st.st_mode))
    return make_error(
        fmt::format("{}: {}, where a directory belongs", dir.string(), file_kind(st.st_mode)),
        ENOTDIR);
  return check_trusted(st, dir, trust);
}

Status detail::check_dirs_above(const fs::path& store, const fs::path& from, Trust trust) {
  if (trust.any_owner) return {};
  std::error_code ec;
  fs::path real = fs::canonical(from, ec);
  if (ec) return sys_error(ec.value(), fmt::format("resolve {}", from.string()));
  // Whoever may rename entries of a directory above could swap the store for one of their own.
  for (fs::path p = real;; p = p.parent_path()) {
    struct stat st;
    if (::stat(p.c_str(), &st) < 0) return sys_error(fmt::format("stat {}", p.string()));
    uid_t me = ::geteuid();
    bool owner_ok = st.st_uid == me || st.st_uid == 0;
    bool shared_ok = !(st.st_mode & (S_IWGRP | S_IWOTH)) || (st.st_mode & S_ISVTX);
    if (!owner_ok || !shared_ok)
      return make_error(
          fmt::format("{}: the directory {} above it is {} (mode {:04o}), so another user could "
                      "replace the store ({})",
                      store.string(), p.string(),
                      owner_ok ? "writable by " + other_writers(st.st_mode)
                               : fmt::format("owned by uid {}", st.st_uid),
                      st.st_mode & 07777, kHow),
          EPERM);
    if (p == p.parent_path()) break;
  }
  return {};
}

Status check_trusted_path(const fs::path& dir, Trust trust) {
  if (trust.any_owner) return {};
  std::error_code ec;
  fs::path real = fs::canonical(dir, ec);
  if (ec) return sys_error(ec.value(), fmt::format("resolve {}", dir.string()));
  CKPT_TRY(detail::check_store_dir(real, trust));
  return detail::check_dirs_above(real, real.parent_path(), trust);
}

}  // namespace ckpt::image
