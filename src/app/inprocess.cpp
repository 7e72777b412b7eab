// The in-process API (ckpt_dump, ckpt_restore_child, ...): the transparent engine called like
// libcriu. A process cannot trace itself, so ckpt_dump() forks a helper ("dumper") that dumps
// its parent while the calling thread waits on a futex in memory the two share.
//
// How the restored copy tells itself apart: the shared page's `state` word is 1 while the
// target's memory is read (so the image holds 1) and 2 once it has been read (so the process
// that goes on sees 2). The waiting thread is stopped inside FUTEX_WAIT; both the live process
// and the restored copy restart that call, find state != 0 and look at which value it is.
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <new>
#include <string>

#include "ckpt/ckpt.h"
#include "common/child_process.hpp"
#include "common/result.hpp"
#include "dump/dump.hpp"
#include "image/store.hpp"
#include "restore/restore.hpp"

namespace ckpt::inprocess {
namespace {

enum : uint32_t {
  kWaiting = 0,    // the dumper has not frozen us yet
  kInImage = 1,    // frozen: the memory being read holds this value
  kRead = 2,       // everything is read; the live process resumes with this value
  kNotFrozen = 3,  // the dump failed before any thread was stopped
};

// The page shared between the caller and its dumper (and the dumper's own tracer child).
struct SharedPage {
  uint32_t state;
  uint32_t done;  // 1 once result and message are written (never 1 in an image)
  int32_t result;
  char message[4000];
};
static_assert(sizeof(SharedPage) <= 4096);

// The options behind ckpt_set_*: one set per process, as in libcriu.
struct Options {
  std::string dir;
  int dir_fd = -1;
  bool shell_job = false;
  bool leave_running = false;
};

struct Global {
  std::mutex mu;
  Options opts;
};

Global& global() {
  static Global g;
  return g;
}

Options snapshot() {
  std::lock_guard lock(global().mu);
  return global().opts;
}

thread_local std::string last_error;

int fail(const Error& e) {
  last_error = e.message;
  int err = e.errnum > 0 ? e.errnum : EIO;
  return -err;
}

uint32_t load(uint32_t* word) {
  return std::atomic_ref<uint32_t>(*word).load();
}
void store(uint32_t* word, uint32_t v) {
  std::atomic_ref<uint32_t>(*word).store(v);
}

// Shared (not FUTEX_PRIVATE) operations: the word is written from other processes.
void futex_wait(uint32_t* word, uint32_t expected, const timespec* timeout) {
  ::syscall(SYS_futex, word, FUTEX_WAIT, expected, timeout, nullptr, 0);
}
void futex_wake(uint32_t* word) {
  ::syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

Result<std::filesystem::path> images_dir(const Options& o) {
  if (o.dir_fd >= 0) {
    std::error_code ec;
    auto p = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(o.dir_fd), ec);
    if (ec) return sys_error(ec.value(), fmt::format("images directory fd {}", o.dir_fd));
    return p;
  }
  if (o.dir.empty()) return make_error("no images directory set (ckpt_set_images_dir)", EINVAL);
  return std::filesystem::path(o.dir);
}

// Runs in the dumper (a child of the target); never returns.
[[noreturn]] void run_dumper(SharedPage* page, pid_t target, const std::filesystem::path& dir,
                             bool shell_job) {
  auto finish = [page](int result, std::string_view message) {
    page->result = result;
    size_t n = std::min(message.size(), sizeof page->message - 1);
    std::memcpy(page->message, message.data(), n);
    page->message[n] = '\0';
    if (load(&page->state) == kWaiting) store(&page->state, kNotFrozen);
    store(&page->done, 1);
    futex_wake(&page->state);
    futex_wake(&page->done);
    ::_exit(0);
  };
  auto st = image::Store::open(dir, {.create = true});
  if (!st.ok()) finish(-(st.error().errnum > 0 ? st.error().errnum : EIO), st.error().message);
  DumpOptions d;
  d.pid = target;
  // The image is always taken from a running process; leave_running=false is done by the
  // caller killing itself, after the dumper is reaped.
  d.leave_running = true;
  d.shell_job = shell_job;
  d.ignore_children = {::getpid()};
  d.on_frozen = [page] { store(&page->state, kInImage); };
  d.on_memory_read = [page] { store(&page->state, kRead); };
  auto r = dump_process(*st, d);
  if (!r.ok()) finish(-(r.error().errnum > 0 ? r.error().errnum : EIO), r.error().message);
  finish(0, "");
  ::_exit(0);  // not reached: finish() exits
}

// Waits while *word == value; stops early if the dumper died without answering.
void wait_while(uint32_t* word, uint32_t value, pid_t dumper, bool* dumper_gone) {
  const timespec tick{0, 100'000'000};
  while (load(word) == value && !*dumper_gone) {
    futex_wait(word, value, &tick);
    if (load(word) != value) break;
    int status;
    pid_t r = ::waitpid(dumper, &status, WNOHANG);
    if (r == dumper || (r < 0 && errno == ECHILD)) *dumper_gone = true;
  }
}

struct Mapping {
  void* addr = MAP_FAILED;
  ~Mapping() {
    if (addr != MAP_FAILED) ::munmap(addr, 4096);
  }
};

int dump_self() {
  Options o = snapshot();
  auto dir = images_dir(o);
  if (!dir.ok()) return fail(dir.error().wrap("ckpt_dump"));
  Mapping map;
  map.addr = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (map.addr == MAP_FAILED) return fail(sys_error("ckpt_dump: mmap"));
  auto* page = new (map.addr) SharedPage{};
  pid_t self = ::getpid();
  pid_t dumper = ::fork();
  if (dumper < 0) return fail(sys_error("ckpt_dump: fork"));
  if (dumper == 0) run_dumper(page, self, *dir, o.shell_job);
  bool gone = false;
  wait_while(&page->state, kWaiting, dumper, &gone);
  // In a restored copy: state 1 from the image, no result, and the dumper is not our child.
  if (load(&page->state) == kInImage && load(&page->done) == 0) {
    if (::waitpid(dumper, nullptr, WNOHANG) < 0 && errno == ECHILD) {
      last_error.clear();
      return 1;
    }
  }
  wait_while(&page->done, 0, dumper, &gone);
  (void)wait_end(dumper);
  if (load(&page->done) == 0)
    return fail(make_error("ckpt_dump: the dumper process died without an answer", EIO));
  if (page->result != 0) {
    last_error = page->message;
    return page->result;
  }
  last_error.clear();
  if (!o.leave_running) ::kill(self, SIGKILL);
  return 0;
}

int restore_child() {
  Options o = snapshot();
  auto dir = images_dir(o);
  if (!dir.ok()) return fail(dir.error().wrap("ckpt_restore_child"));
  if (!image::is_store(*dir))
    return fail(make_error(fmt::format("ckpt_restore_child: {} holds no checkpoint", dir->string()),
                           ENOENT));
  auto st = image::Store::open(*dir);
  if (!st.ok()) return fail(st.error().wrap("ckpt_restore_child"));
  // restore_process checks each section's checksum as it reads it (no separate pass over the
  // image) and falls back to older generations; "none valid" comes back as ENOENT.
  RestoreOptions ro;
  ro.shell_job = o.shell_job;
  auto r = restore_process(*st, ro);
  if (!r.ok()) return fail(r.error().wrap("ckpt_restore_child"));
  last_error.clear();
  return r->pid;
}

}  // namespace
}  // namespace ckpt::inprocess

using ckpt::inprocess::global;

extern "C" {

int ckpt_init_opts(void) {
  std::lock_guard lock(global().mu);
  global().opts = {};
  return 0;
}

int ckpt_set_images_dir(const char* path) {
  if (!path || !*path) return -EINVAL;
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  if (ec) return -ec.value();
  std::lock_guard lock(global().mu);
  global().opts.dir = abs.string();
  global().opts.dir_fd = -1;
  return 0;
}

int ckpt_set_images_dir_fd(int fd) {
  if (fd < 0) return -EBADF;
  std::lock_guard lock(global().mu);
  global().opts.dir_fd = fd;
  global().opts.dir.clear();
  return 0;
}

void ckpt_set_shell_job(int shell_job) {
  std::lock_guard lock(global().mu);
  global().opts.shell_job = shell_job != 0;
}

void ckpt_set_leave_running(int leave_running) {
  std::lock_guard lock(global().mu);
  global().opts.leave_running = leave_running != 0;
}

int ckpt_dump(void) {
  return ckpt::inprocess::dump_self();
}

int ckpt_restore_child(void) {
  return ckpt::inprocess::restore_child();
}

const char* ckpt_last_error(void) {
  return ckpt::inprocess::last_error.c_str();
}

}  // extern "C"
