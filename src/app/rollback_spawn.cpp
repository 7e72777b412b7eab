// Starting the rollback helper, and the helper's entry point.
//
// The helper is the program itself, re-executed (/proc/self/exe) with kHelperEnv set: libckpt's
// constructor below sees the variable and runs the helper instead of returning to the program.
// Re-executing gives the helper memory of its own (a plain fork would share, and so pin, every
// page of the program, and could inherit locks held by other threads), and it needs no separate
// binary to be installed.
//
// It must not be the program's child: exec makes any process a SIGCHLD child again, which the
// program's wait() would see. So it is started the way posix_spawn starts a program, twice: an
// intermediate process (clone CLONE_VM|CLONE_VFORK, exit signal 0, so the program gets no
// SIGCHLD for it) starts the helper the same way and ends at once; the helper, orphaned, belongs
// to init (or to the nearest subreaper) from then on, and the program reaps the intermediate.
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "app/rollback_client.hpp"
#include "app/rollback_helper.hpp"
#include "common/scoped_fd.hpp"

extern char** environ;

namespace ckpt::rollback {
namespace {

constexpr uint64_t kUffdWpAsync = 1 << 15;        // UFFD_FEATURE_WP_ASYNC (6.7)
constexpr int kUffdUserModeOnly = 1;              // UFFD_USER_MODE_ONLY (5.11)
constexpr unsigned kCloseRangeCloexec = 1u << 2;  // CLOSE_RANGE_CLOEXEC (5.11)
constexpr size_t kChildStack = 64 * 1024;

struct SpawnArgs {
  char** argv;
  char** envp;
  int keep[3];
  char* helper_stack;  // top of the helper's stack until it execs
  pid_t helper;
  int err;
};

// The helper until execve: it shares the caller's memory, so system calls only.
int exec_helper(void* p) {
  auto* a = static_cast<SpawnArgs*>(p);
  ::syscall(SYS_close_range, 3, ~0U, kCloseRangeCloexec);
  for (int fd : a->keep)
    if (fd >= 0) ::fcntl(fd, F_SETFD, 0);
  ::execve("/proc/self/exe", a->argv, a->envp);
  a->err = errno;
  return 127;
}

// The intermediate process: starts the helper and ends, orphaning it.
int start_helper(void* p) {
  auto* a = static_cast<SpawnArgs*>(p);
  a->helper = ::clone(exec_helper, a->helper_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, a);
  if (a->helper < 0) a->err = errno;
  return 0;
}

int open_userfaultfd() {
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | kUffdUserModeOnly));
  if (fd < 0) fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) return -1;
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = kUffdWpAsync;
  if (::ioctl(fd, UFFDIO_API, &api) < 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// &struct pthread::tid - thread pointer, the same for every thread glibc creates.
int64_t tid_address_offset() {
  int* addr = nullptr;
  if (::prctl(PR_GET_TID_ADDRESS, &addr) != 0 || !addr) return 0;
  int64_t off = reinterpret_cast<char*>(addr) - reinterpret_cast<char*>(::pthread_self());
  return off > 0 && off < 4096 ? off : 0;
}

void init_area(void* base) {
  RwArea* rw = new (base) RwArea{};
  rw->magic = kMagic;
  rw->target_pid = ::getpid();
  rw->target_base = reinterpret_cast<uint64_t>(base);
  rw->syscall_gadget = reinterpret_cast<uint64_t>(&ckpt_rb_syscall_gadget);
  rw->park_entry = reinterpret_cast<uint64_t>(&ckpt_rb_snapshot_park);
  rw->tid_address_offset = tid_address_offset();
  rw->snap_poll = {0, POLLIN, 0};
  std::strncpy(rw->snap_name, "ckpt-snapshot", sizeof rw->snap_name - 1);
}

std::vector<char*> helper_environment(std::string& var) {
  std::vector<char*> env;
  size_t prefix = std::strlen(kHelperEnv);
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, kHelperEnv, prefix) != 0 || (*e)[prefix] != '=') env.push_back(*e);
  env.push_back(var.data());
  env.push_back(nullptr);
  return env;
}

Result<pid_t> start_process(int memfd, int sock, int uffd) {
  std::string var = fmt::format("{}={},{},{}", kHelperEnv, memfd, sock, uffd);
  std::vector<char*> env = helper_environment(var);
  char name[] = "ckpt-rollback-helper";
  char* argv[] = {name, nullptr};
  char* stacks = static_cast<char*>(::mmap(nullptr, 2 * kChildStack, PROT_READ | PROT_WRITE,
                                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0));
  if (stacks == MAP_FAILED) return sys_error("mmap helper stacks");
  SpawnArgs a{argv, env.data(), {memfd, sock, uffd}, stacks + 2 * kChildStack, 0, 0};
  // No signal handler of the program may run in a process that shares our memory; the helper
  // keeps every signal blocked for good (exec keeps the mask).
  sigset_t all, old;
  ::sigfillset(&all);
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof(uint64_t));
  pid_t mid = ::clone(start_helper, stacks + kChildStack, CLONE_VM | CLONE_VFORK, &a);
  int clone_err = errno;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, nullptr, sizeof(uint64_t));
  if (mid > 0) {
    siginfo_t si;
    while (::waitid(P_PID, static_cast<id_t>(mid), &si, WEXITED | __WALL) < 0 && errno == EINTR) {
    }
  }
  ::munmap(stacks, 2 * kChildStack);
  if (mid < 0) return sys_error(clone_err, "clone rollback helper");
  if (a.err != 0) return sys_error(a.err, "start /proc/self/exe as the rollback helper");
  return a.helper;
}

// Waits for the answer to request `id`, up to `timeout_ms` in all when > 0. The futex word is
// `seq`, bumped after each answer; the answer is ours when its id is.
bool wait_answer(Client& c, uint64_t id, int timeout_ms) {
  const timespec tick{0, 100'000'000};
  for (int waited = 0;; waited += 100) {
    uint32_t seq = std::atomic_ref<uint32_t>(c.rw->seq).load();
    if (std::atomic_ref<uint64_t>(c.rw->rep.id).load() == id) return true;
    ::syscall(SYS_futex, &c.rw->seq, FUTEX_WAIT, seq, &tick, nullptr, 0);
    if (std::atomic_ref<uint64_t>(c.rw->rep.id).load() == id) return true;
    if (helper_gone(c) || (timeout_ms > 0 && waited >= timeout_ms)) return false;
  }
}

}  // namespace

bool helper_gone(const Client& c) {
  if (c.helper_pidfd < 0) return true;
  pollfd p{c.helper_pidfd, POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;
}

bool exchange(Client& c) {
  uint64_t id = ++c.rw->last_id;
  c.rw->req.id = id;
  if (::send(c.sock, "r", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) return false;
  return wait_answer(c, id, 0);
}

Result<Client> spawn_helper() {
  ScopedFd memfd(static_cast<int>(::syscall(SYS_memfd_create, "ckpt-rollback", MFD_CLOEXEC)));
  if (!memfd) return sys_error("memfd_create");
  if (::ftruncate(memfd.get(), kSharedSize) < 0) return sys_error("ftruncate memfd");
  void* base = ::mmap(nullptr, kSharedSize, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
  if (base == MAP_FAILED) return sys_error("mmap shared area");
  Client c;
  c.pid = ::getpid();
  c.base = base;
  c.rw = rw_area(base);
  c.ro = ro_area(base);
  init_area(base);
  // The status is the helper's to write: a wild pointer of the program cannot change it.
  ::mprotect(static_cast<char*>(base) + kRwSize, kRoSize, PROT_READ);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    Error e = sys_error("socketpair");
    discard_client(c);
    return e;
  }
  c.sock = sv[0];
  ScopedFd theirs(sv[1]);
  ScopedFd uffd(open_userfaultfd());
  auto pid = start_process(memfd.get(), theirs.get(), uffd.get());
  if (!pid) {
    discard_client(c);
    return std::move(pid).error();
  }
  c.helper = *pid;
  c.helper_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, *pid, 0));
  // Under Yama's ptrace_scope 1 a child may trace its parent only when the parent says so.
  ::prctl(PR_SET_PTRACER, *pid, 0, 0, 0);
  c.rw->req = Request{};
  c.rw->req.op = static_cast<uint32_t>(Op::hello);
  c.rw->req.id = ++c.rw->last_id;
  if (::send(c.sock, "h", 1, MSG_NOSIGNAL) != 1 || !wait_answer(c, c.rw->req.id, 10000)) {
    discard_client(c);
    return make_error("the rollback helper did not start (does the program link libckpt?)", EIO);
  }
  if (c.rw->rep.result < 0) {
    Error e = make_error(c.rw->rep.message, c.rw->rep.err);
    discard_client(c);
    return e;
  }
  return c;
}

void discard_client(Client& c) {
  if (c.base) ::munmap(c.base, kSharedSize);
  if (c.sock >= 0) ::close(c.sock);
  if (c.helper_pidfd >= 0) {
    if (c.pid == ::getpid()) ::syscall(SYS_pidfd_send_signal, c.helper_pidfd, SIGKILL, nullptr, 0);
    ::close(c.helper_pidfd);
  }
  c = Client{};
}

}  // namespace ckpt::rollback

// In the re-executed program: become the helper, before the program's own initialisers run.
__attribute__((constructor(101))) static void ckpt_rollback_helper_entry() {
  const char* v = std::getenv(ckpt::rollback::kHelperEnv);
  if (!v) return;
  int memfd = -1, sock = -1, uffd = -1;
  if (std::sscanf(v, "%d,%d,%d", &memfd, &sock, &uffd) != 3) ::_exit(2);
  ::_exit(ckpt::rollback::run_helper(memfd, sock, uffd));
}
