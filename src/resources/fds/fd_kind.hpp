#pragma once
// One plug-in per kind of open file (regular file, pipe, eventfd, unix socket, ...). Every kind
// implements the same phases; the dispatcher (resources/files.cpp) knows only this interface and
// the table (registry.cpp), and a kind knows only its own kind and the fd helpers below it
// (fd_access.hpp). Adding a kind means one new file here and one line in the table.
//
// Phases, in the order they run:
//   identify   claims()    at dump, which kind an fd is (the table is asked in order)
//   dump       dump()      fills the open file's payload; may refuse, naming pid, fd and why
//   link       link()      sees every open file of its kind in the dumped tree at once
//                          (pairs socket ends, checks peers)
//   recreate   recreate()  in the restorer, opens every open file of its kind, before any
//                          process is built
//   place      (generic)   each process puts its descriptors at their numbers (dup3)
//   settle     settle()    inside each restored process once its descriptors are in place
//                          (epoll registrations, locks)
// and for the open files that can only be made once every restored process exists (a pidfd
// names one of them: opened_after_tree()), which the phases above leave out:
//   open late  open_after_tree()   in the restorer, once every process exists
//   place late (generic)           each holder takes them while being built (injected calls)
//   settle late settle_late()      in the process being built: what settle() left out because
//                                  it involved those descriptors (epoll registrations of them)
#include <sys/stat.h>
#include <sys/types.h>

#include <array>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "image/schema/records.hpp"
#include "image/store.hpp"
#include "proc/fdinfo.hpp"

namespace ckpt {
struct DumpContext;
}

namespace ckpt::fds {

// What is known of one descriptor of a dumped process before a kind claims it.
class FdProbe {
 public:
  static Result<FdProbe> read(pid_t pid, int fd);

  pid_t pid = 0;
  int fd = 0;
  std::string link;  // readlink of /proc/PID/fd/N
  struct stat st {};
  proc::FdInfo info;

  // The open file itself in ckpt (pidfd_getfd): opened on first use, for kinds that must look
  // at the object (sockets, pipes) without running the target.
  Result<int> borrowed();
  // For sockets: SO_DOMAIN, SO_TYPE, SO_PROTOCOL (-1 when not a socket).
  int domain = -1, type = -1, protocol = -1;

 private:
  std::optional<ScopedFd> borrowed_;
};

// Options of a dump that kinds act on.
struct DumpFlags {
  bool shell_job = false;
  bool ext_unix_sk = false;
  bool tcp_established = false;
  bool tcp_close = false;
  bool skip_in_flight = false;  // a listener's waiting connections left out
};

// Given to dump(): the process being dumped and what the whole image collects.
struct DumpEnv {
  DumpContext& ctx;
  const DumpFlags& flags;
  schema::ImageRoot& image;
  // The open file of a descriptor found in flight (SCM_RIGHTS): `copy` is ckpt's own copy of it,
  // `p` its probe. One the tree already has (kcmp), else a new one that no process holds.
  std::function<Result<uint32_t>(FdProbe& p, ScopedFd copy)> in_flight;
};

// One open file of the dumped tree and every descriptor that refers to it.
struct Holder {
  pid_t pid;
  int fd;
};
struct LinkedFile {
  schema::OpenFile* file;
  std::vector<Holder> holders;  // in creation order of the processes
};

struct LinkEnv {
  std::vector<pid_t> pids;  // the dumped processes
  // A process outside the tree with an fd linking to `link` ("socket:[INO]"), 0 when none.
  std::function<pid_t(const std::string& link)> outside_holder;
};

// Where the restorer finds what kinds need besides their records.
struct RecreateEnv {
  const image::Store& store;
  const image::GenerationInfo& gen;
  const schema::ImageRoot& image;
  bool shell_job = false;
  bool accept_changed_files = false;
  bool tcp_close = false;  // every connection comes back closed
  // Recreated inodes of deleted files, by DeletedFile::id.
  const std::map<int32_t, int>& deleted_inodes;
  // Recreated shared memory objects (memfds), by ShmObject::id.
  const std::map<int32_t, int>& shm_objects;
  // "pid P: fd N", the first descriptor of open file `id`, for messages.
  std::function<std::string(uint32_t id)> holder;
};

using OpenedFiles = std::map<uint32_t, ScopedFd>;  // by OpenFile::id

// Inside a restored process, after every descriptor is in place (but those placed late).
struct SettleEnv {
  pid_t pid;
  const schema::ProcessRecord& proc;
  // Whether this process is the first (in creation order) to hold the open file.
  bool first_holder;
  // This process's descriptors placed once every process exists (opened_after_tree()): not
  // there yet during settle(), there during settle_late().
  const std::set<int>& placed_late;
};

// System calls made by a restored process while it is being built (settle_late()).
class InjectedCalls {
 public:
  virtual ~InjectedCalls() = default;
  // A negative return is an error naming `name`.
  virtual Result<long> call(const char* name, long nr, std::array<uint64_t, 6> args) = 0;
  // Copies `bytes` into memory of the process that the next call may read: its address there.
  virtual Result<uint64_t> put(std::span<const std::byte> bytes) = 0;
};

class FdKind {
 public:
  virtual ~FdKind() = default;
  virtual std::string_view name() const = 0;
  virtual bool claims(FdProbe& p, const DumpFlags& flags) const = 0;
  // `of` arrives with id, kind, flags, pos and path filled in.
  virtual Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const = 0;
  virtual Status link(const LinkEnv&, const std::vector<LinkedFile>&) const { return {}; }
  // Opens every open file in `mine` (all of this kind) into `out`, by id.
  virtual Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                          OpenedFiles& out) const = 0;
  // Kinds are recreated by rank, then in the table's order; a kind that needs the files of
  // others (to send them again) ranks higher.
  virtual int recreate_rank() const { return 0; }
  virtual Status settle(const SettleEnv&, const schema::OpenFile&, int /*fd*/) const { return {}; }
  // Whether `of` can only be opened once every restored process exists; then recreate() leaves
  // it out and open_after_tree() opens it.
  virtual bool opened_after_tree(const schema::OpenFile&) const { return false; }
  virtual Result<ScopedFd> open_after_tree(const schema::OpenFile& of) const {
    return errorf("open file {} ({}) cannot be opened after the tree", of.id, of.kind);
  }
  // In the process being built, once its late descriptors are in place, for each open file it
  // holds (at `fd`).
  virtual Status settle_late(const SettleEnv&, const schema::OpenFile&, int /*fd*/,
                             InjectedCalls&) const {
    return {};
  }
};

// The table: every kind, in the order they are asked to claim an fd.
const std::vector<const FdKind*>& all_kinds();
const FdKind* find_kind(std::string_view name);

// Decodes a kind's payload, naming the open file in errors.
template <class T>
Result<T> payload_of(const schema::OpenFile& of) {
  return schema::from_value<T>(of.payload, fmt::format("open file {} ({})", of.id, of.kind));
}

}  // namespace ckpt::fds
