#include "proc/kernel_features.hpp"

#include <elf.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "arch/arch.hpp"
#include "common/child_process.hpp"
#include "common/scoped_fd.hpp"
#include "proc/maps.hpp"
#include "proc/pagemap.hpp"
#include "proc/proc_file.hpp"
#include "proc/stat.hpp"
#include "proc/status.hpp"
#include "proc/vma_iter.hpp"
#include "ptrace/rseq_config.hpp"

namespace ckpt::proc {

namespace {

FeatureProbe result(std::string name, bool essential, bool ok, std::string detail = {}) {
  return FeatureProbe{std::move(name), essential, ok, std::move(detail)};
}

std::string errno_text(std::string_view what, int err = errno) {
  return fmt::format("{}: {}", what, std::strerror(err));
}

// A forked child that only sleeps until killed; killed and reaped on destruction.
class SleepingChild {
 public:
  SleepingChild() {
    pid_ = ::fork();
    if (pid_ == 0) {
      for (;;) ::pause();
    }
  }
  ~SleepingChild() {
    if (pid_ > 0) kill_and_wait(pid_);
  }
  SleepingChild(const SleepingChild&) = delete;
  SleepingChild& operator=(const SleepingChild&) = delete;
  pid_t pid() const { return pid_; }
  bool ok() const { return pid_ > 0; }

 private:
  pid_t pid_;
};

// Seizes `child` and interrupts it into a ptrace-stop. Returns an empty string or the failure.
std::string seize_and_stop(pid_t pid) {
  if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) != 0) return errno_text("PTRACE_SEIZE");
  if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) return errno_text("PTRACE_INTERRUPT");
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return errno_text("waitpid");
  if (!WIFSTOPPED(status) || (status >> 16) != PTRACE_EVENT_STOP)
    return fmt::format("PTRACE_INTERRUPT: unexpected wait status {:#x}", status);
  return {};
}

// Runs `fn` in a forked child and returns its exit code (or -1 when it did not exit normally).
// `fn` must only make system calls: the parent may have other threads holding locks.
template <typename Fn>
int run_in_child(Fn fn) {
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) ::_exit(fn());
  int status = wait_end(pid);
  return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Probes that need a stopped tracee share this shape.
template <typename Fn>
FeatureProbe with_tracee(std::string name, Fn fn) {
  SleepingChild child;
  if (!child.ok()) return result(name, true, false, errno_text("fork"));
  if (std::string err = seize_and_stop(child.pid()); !err.empty())
    return result(name, true, false, err);
  std::string err = fn(child.pid());
  return result(name, true, err.empty(), err);
}

}  // namespace

FeatureProbe probe_ptrace_seize() {
  return with_tracee("ptrace_seize", [](pid_t) { return std::string(); });
}

FeatureProbe probe_ptrace_xstate() {
  return with_tracee("ptrace_xstate", [](pid_t pid) -> std::string {
    std::vector<std::byte> buf(64 * 1024);
    iovec iov{buf.data(), buf.size()};
    if (::ptrace(PTRACE_GETREGSET, pid, reinterpret_cast<void*>(uintptr_t{arch::kExtendedRegset}),
                 &iov) != 0)
      return errno_text(std::string("PTRACE_GETREGSET ") + arch::kExtendedRegsetName);
    if (iov.iov_len < 512) return fmt::format("XSAVE area of only {} bytes", iov.iov_len);
    return {};
  });
}

FeatureProbe probe_ptrace_sigmask() {
  return with_tracee("ptrace_sigmask", [](pid_t pid) -> std::string {
    uint64_t mask = uint64_t{1} << (SIGUSR1 - 1);
    if (::ptrace(PTRACE_SETSIGMASK, pid, sizeof mask, &mask) != 0)
      return errno_text("PTRACE_SETSIGMASK");
    uint64_t got = 0;
    if (::ptrace(PTRACE_GETSIGMASK, pid, sizeof got, &got) != 0)
      return errno_text("PTRACE_GETSIGMASK");
    auto status = read_status(pid);
    if (!status) return status.error().message;
    if (got != mask || status->sig_blk != mask)
      return fmt::format("set mask {:#x}, read back {:#x}, status says {:#x}", mask, got,
                         status->sig_blk);
    return {};
  });
}

FeatureProbe probe_ptrace_peeksiginfo() {
  return with_tracee("ptrace_peeksiginfo", [](pid_t pid) -> std::string {
    // A stopped tracee does not dequeue signals, so this one stays in the shared queue.
    if (::kill(pid, SIGUSR2) != 0) return errno_text("kill");
    __ptrace_peeksiginfo_args args{0, PTRACE_PEEKSIGINFO_SHARED, 1};
    siginfo_t info{};
    long n = ::ptrace(PTRACE_PEEKSIGINFO, pid, &args, &info);
    if (n < 0) return errno_text("PTRACE_PEEKSIGINFO");
    if (n != 1 || info.si_signo != SIGUSR2)
      return fmt::format("expected the queued SIGUSR2, got {} entries", n);
    return {};
  });
}

FeatureProbe probe_ptrace_rseq() {
  return with_tracee("ptrace_rseq_config", [](pid_t pid) -> std::string {
    auto conf = ptrace::rseq_config(pid);
    if (!conf.ok()) return errno_text("PTRACE_GET_RSEQ_CONFIGURATION", conf.error().errnum);
    return {};
  });
}

FeatureProbe probe_process_vm() {
  volatile uint64_t cell = 0x1122334455667788;  // the child has its own copy, same address
  SleepingChild child;
  if (!child.ok()) return result("process_vm_readv", true, false, errno_text("fork"));
  uint64_t value = 0;
  iovec local{&value, sizeof value};
  iovec remote{const_cast<uint64_t*>(&cell), sizeof value};
  if (::process_vm_readv(child.pid(), &local, 1, &remote, 1, 0) != sizeof value)
    return result("process_vm_readv", true, false, errno_text("process_vm_readv"));
  if (value != 0x1122334455667788)
    return result("process_vm_readv", true, false, "read back the wrong value");
  value = 42;
  if (::process_vm_writev(child.pid(), &local, 1, &remote, 1, 0) != sizeof value)
    return result("process_vm_readv", true, false, errno_text("process_vm_writev"));
  value = 0;
  if (::process_vm_readv(child.pid(), &local, 1, &remote, 1, 0) != sizeof value || value != 42)
    return result("process_vm_readv", true, false, "process_vm_writev did not stick");
  return result("process_vm_readv", true, true, "readv and writev");
}

FeatureProbe probe_clone3_set_tid() {
  int last_err = 0;
  // Another process may take the pid between our choice and clone3: retry a few times.
  for (int attempt = 0; attempt < 5; ++attempt) {
    pid_t free_pid = ::fork();
    if (free_pid == 0) ::_exit(0);
    if (free_pid < 0) return result("clone3_set_tid", true, false, errno_text("fork"));
    ::waitpid(free_pid, nullptr, 0);
    pid_t want = free_pid;
    clone_args args{};
    args.exit_signal = SIGCHLD;
    args.set_tid = reinterpret_cast<uintptr_t>(&want);
    args.set_tid_size = 1;
    long pid = ::syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) ::syscall(SYS_exit_group, 0);
    if (pid > 0) {
      ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
      if (pid == want) return result("clone3_set_tid", true, true);
      return result("clone3_set_tid", true, false, fmt::format("asked {}, got {}", want, pid));
    }
    last_err = errno;
    if (last_err != EEXIST) break;
  }
  return result("clone3_set_tid", true, false, errno_text("clone3 with set_tid", last_err));
}

FeatureProbe probe_pidfd_getfd() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return result("pidfd_getfd", true, false, errno_text("pipe"));
  ScopedFd rd(fds[0]), wr(fds[1]);
  SleepingChild child;  // inherits the pipe
  if (!child.ok()) return result("pidfd_getfd", true, false, errno_text("fork"));
  ScopedFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child.pid(), 0)));
  if (!pidfd) return result("pidfd_getfd", true, false, errno_text("pidfd_open"));
  ScopedFd stolen(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), wr.get(), 0)));
  if (!stolen) return result("pidfd_getfd", true, false, errno_text("pidfd_getfd"));
  struct stat a, b;
  if (::fstat(stolen.get(), &a) != 0 || ::fstat(wr.get(), &b) != 0 || a.st_ino != b.st_ino)
    return result("pidfd_getfd", true, false, "pidfd_getfd returned another file");
  return result("pidfd_getfd", true, true, "pidfd_open and pidfd_getfd");
}

FeatureProbe probe_pagemap_scan() {
  const size_t ps = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* mem = ::mmap(nullptr, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return result("pagemap_scan", false, false, errno_text("mmap"));
  auto* p = static_cast<volatile char*>(mem);
  p[ps] = 1;
  p[3 * ps] = 1;
  auto base = reinterpret_cast<uint64_t>(mem);
  std::string err;
  auto pm = Pagemap::open(::getpid());
  if (!pm) {
    err = pm.error().message;
  } else if (auto r = pm->scan_ioctl(base, base + 4 * ps, PageFilter::private_anon); !r) {
    err = r.error().message;
  } else if (*r !=
             std::vector<PageRange>{{base + ps, base + 2 * ps}, {base + 3 * ps, base + 4 * ps}}) {
    err = "PAGEMAP_SCAN reported the wrong pages";
  }
  ::munmap(mem, 4 * ps);
  return result("pagemap_scan", false, err.empty(),
                err.empty() ? "" : err + " (will read pagemap)");
}

FeatureProbe probe_prctl_tid_address() {
  int* addr = nullptr;
  if (::prctl(PR_GET_TID_ADDRESS, &addr, 0, 0, 0) != 0)
    return result("prctl_get_tid_address", true, false, errno_text("PR_GET_TID_ADDRESS"));
  return result("prctl_get_tid_address", true, true);
}

// Needed only for processes with POSIX timers: without it their IDs cannot be given back.
FeatureProbe probe_timer_restore_ids() {
  constexpr int kRestoreIds = 77, kGet = 2;  // PR_TIMER_CREATE_RESTORE_IDS (Linux 6.16)
  if (::prctl(kRestoreIds, kGet, 0, 0, 0) < 0)
    return result("timer_create_restore_ids", false, false,
                  errno_text("PR_TIMER_CREATE_RESTORE_IDS") + " (POSIX timers cannot be restored)");
  return result("timer_create_restore_ids", false, true);
}

// Needed only for a timerfd with unread expirations (CONFIG_CHECKPOINT_RESTORE).
FeatureProbe probe_timerfd_set_ticks() {
  ScopedFd fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (fd.get() < 0) return result("timerfd_set_ticks", false, false, errno_text("timerfd_create"));
  uint64_t ticks = 3, got = 0;
  if (::ioctl(fd.get(), _IOW('T', 0, uint64_t), &ticks) < 0)
    return result("timerfd_set_ticks", false, false, errno_text("TFD_IOC_SET_TICKS"));
  if (::read(fd.get(), &got, sizeof got) != sizeof got || got != ticks)
    return result("timerfd_set_ticks", false, false, "TFD_IOC_SET_TICKS did not set the count");
  return result("timerfd_set_ticks", false, true);
}

FeatureProbe probe_kcmp() {
  ScopedFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ScopedFd b(::fcntl(a.get(), F_DUPFD_CLOEXEC, 0));
  ScopedFd c(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!a || !b || !c) return result("kcmp", false, false, errno_text("open /dev/null"));
  pid_t self = ::getpid();
  long same = ::syscall(SYS_kcmp, self, self, KCMP_FILE, a.get(), b.get());
  long other = ::syscall(SYS_kcmp, self, self, KCMP_FILE, a.get(), c.get());
  if (same < 0 || other < 0) return result("kcmp", false, false, errno_text("kcmp KCMP_FILE"));
  if (same != 0 || other == 0) return result("kcmp", false, false, "wrong KCMP_FILE answers");
  return result("kcmp", false, true);
}

FeatureProbe probe_memfd_create() {
  ScopedFd fd(::memfd_create("ckpt-probe", MFD_CLOEXEC));
  if (!fd) return result("memfd_create", true, false, errno_text("memfd_create"));
  return result("memfd_create", true, true);
}

FeatureProbe probe_userfaultfd() {
  ScopedFd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!fd) return result("userfaultfd", false, false, errno_text("userfaultfd"));
  uffdio_api api{};
  api.api = UFFD_API;
  if (::ioctl(fd.get(), UFFDIO_API, &api) != 0)
    return result("userfaultfd", false, false, errno_text("UFFDIO_API"));
  return result("userfaultfd", false, true);
}

FeatureProbe probe_ns_last_pid() {
  ScopedFd fd(::open("/proc/sys/kernel/ns_last_pid", O_RDWR | O_CLOEXEC));
  if (!fd)
    return result("ns_last_pid", false, false, errno_text("open /proc/sys/kernel/ns_last_pid"));
  return result("ns_last_pid", false, true);
}

FeatureProbe probe_prctl_mm_map() {
  unsigned int size = 0;
  if (::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0) != 0)
    return result("prctl_set_mm_map", true, false, errno_text("PR_SET_MM_MAP_SIZE"));
  if (size != sizeof(prctl_mm_map))
    return result("prctl_set_mm_map", true, false,
                  fmt::format("unknown prctl_mm_map size {}", size));
  // Setting the values a process already has is what restore does, minus the change.
  auto st = read_stat(::getpid());
  if (!st) return result("prctl_set_mm_map", true, false, st.error().message);
  std::string auxv_text;
  if (auto a = read_proc_file(::getpid(), "auxv"); a) auxv_text = std::move(*a);
  std::vector<__u64> auxv(auxv_text.size() / sizeof(__u64));
  std::memcpy(auxv.data(), auxv_text.data(), auxv.size() * sizeof(uint64_t));
  prctl_mm_map map{};
  map.start_code = st->start_code, map.end_code = st->end_code;
  map.start_data = st->start_data, map.end_data = st->end_data;
  map.start_brk = st->start_brk, map.brk = reinterpret_cast<uint64_t>(::sbrk(0));
  map.start_stack = st->start_stack;
  map.arg_start = st->arg_start, map.arg_end = st->arg_end;
  map.env_start = st->env_start, map.env_end = st->env_end;
  map.auxv = auxv.data();
  map.auxv_size = static_cast<uint32_t>(auxv.size() * sizeof(uint64_t));
  map.exe_fd = static_cast<uint32_t>(-1);
  int code = run_in_child([&] {
    if (::prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof map, 0) == 0) return 0;
    return errno & 0xff;
  });
  if (code != 0)
    return result(
        "prctl_set_mm_map", true, false,
        code < 0 ? std::string("probe child crashed") : errno_text("PR_SET_MM_MAP", code));
  return result("prctl_set_mm_map", true, true);
}

FeatureProbe probe_soft_dirty() {
  const long ps = ::sysconf(_SC_PAGESIZE);
  // 0: soft-dirty bit set after a write; 1: not set; 2: could not run the check.
  int code = run_in_child([ps] {
    void* mem = ::mmap(nullptr, static_cast<size_t>(ps), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int clear = ::open("/proc/self/clear_refs", O_WRONLY);
    int pagemap = ::open("/proc/self/pagemap", O_RDONLY);
    if (mem == MAP_FAILED || clear < 0 || pagemap < 0) return 2;
    if (::write(clear, "4", 1) != 1) return 2;
    *static_cast<volatile char*>(mem) = 1;
    uint64_t entry = 0;
    off_t off =
        static_cast<off_t>(reinterpret_cast<uintptr_t>(mem) / static_cast<uintptr_t>(ps) * 8);
    if (::pread(pagemap, &entry, sizeof entry, off) != sizeof entry) return 2;
    return (entry >> 55) & 1 ? 0 : 1;
  });
  if (code == 0) return result("soft_dirty", false, true);
  return result("soft_dirty", false, false,
                code == 1 ? "pagemap bit 55 never set (no CONFIG_MEM_SOFT_DIRTY)"
                          : "could not run the clear_refs check");
}

FeatureProbe probe_bpf_vma_iter() {
  auto iter = VmaIter::load();
  if (!iter.ok()) return result("bpf_vma_iter", false, false, iter.error().message);
  auto raw = iter->read(::getpid());
  if (!raw.ok()) return result("bpf_vma_iter", false, false, raw.error().message);
  auto maps = read_maps(::getpid());
  if (!maps.ok() || maps->empty() || raw->empty() || raw->front().start != maps->front().start)
    return result("bpf_vma_iter", false, false, "its mappings are not those of maps");
  return result("bpf_vma_iter", false, true, "VmFlags read without walking page tables");
}

std::vector<FeatureProbe> probe_kernel_features() {
  return {probe_ptrace_seize(),       probe_ptrace_xstate(),     probe_ptrace_sigmask(),
          probe_ptrace_peeksiginfo(), probe_ptrace_rseq(),       probe_process_vm(),
          probe_clone3_set_tid(),     probe_pidfd_getfd(),       probe_pagemap_scan(),
          probe_prctl_mm_map(),       probe_prctl_tid_address(), probe_kcmp(),
          probe_memfd_create(),       probe_userfaultfd(),       probe_soft_dirty(),
          probe_ns_last_pid(),        probe_timer_restore_ids(), probe_timerfd_set_ticks(),
          probe_bpf_vma_iter()};
}

}  // namespace ckpt::proc
