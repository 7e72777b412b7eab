// The /proc readers against a real child process that sets up known state.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "proc/fdinfo.hpp"
#include "proc/maps.hpp"
#include "proc/misc.hpp"
#include "proc/stat.hpp"
#include "proc/status.hpp"
#include "proc/task.hpp"

namespace ckpt::proc {
namespace {

// What the child reports back through shared memory once it is ready.
struct VictimInfo {
  uint64_t locked_addr;
  uint64_t dontdump_addr;
  uint64_t deleted_file_addr;
  pid_t thread_tid;
  pid_t grandchild;
  int eventfd, epollfd, signalfd, timerfd, lockfd;
  char ready;
};

constexpr char kDeletedPath[] = "/tmp/ckpt proc test (x).dat";

void* idle_thread(void* arg) {
  *static_cast<pid_t*>(arg) = gettid();
  for (;;) pause();
  return nullptr;
}

// Runs in the forked child: only the state the tests check, then sleeps.
[[noreturn]] void victim_main(VictimInfo* info, int ready_fd) {
  const long ps = sysconf(_SC_PAGESIZE);
  umask(027);
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGUSR1);
  sigaddset(&blocked, SIGHUP);
  sigprocmask(SIG_BLOCK, &blocked, nullptr);
  auto* locked = static_cast<char*>(
      mmap(nullptr, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  // The raw call: ASan's mlock interceptor does nothing.
  syscall(SYS_mlock, locked, ps);
  auto* nodump =
      static_cast<char*>(mmap(nullptr, 2 * ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  madvise(nodump, 2 * ps, MADV_DONTDUMP);
  int fd = open(kDeletedPath, O_RDWR | O_CREAT | O_TRUNC, 0600);
  (void)!ftruncate(fd, ps);
  void* file = mmap(nullptr, ps, PROT_READ, MAP_SHARED, fd, 0);
  unlink(kDeletedPath);
  info->lockfd = fd;
  flock(fd, LOCK_EX);
  info->locked_addr = reinterpret_cast<uint64_t>(locked);
  info->dontdump_addr = reinterpret_cast<uint64_t>(nodump);
  info->deleted_file_addr = reinterpret_cast<uint64_t>(file);
  info->eventfd = eventfd(42, EFD_SEMAPHORE);
  info->epollfd = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0xabcdef;
  epoll_ctl(info->epollfd, EPOLL_CTL_ADD, info->eventfd, &ev);
  info->signalfd = signalfd(-1, &blocked, 0);
  info->timerfd = timerfd_create(CLOCK_MONOTONIC, 0);
  itimerspec its{{2, 0}, {1000, 0}};
  timerfd_settime(info->timerfd, 0, &its, nullptr);
  timer_t timer;
  sigevent sev{};
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGUSR1;
  timer_create(CLOCK_MONOTONIC, &sev, &timer);
  pthread_t thread;
  pthread_create(&thread, nullptr, idle_thread, &info->thread_tid);
  pid_t grandchild = fork();  // info is shared memory: only the child may store the pid
  if (grandchild == 0) {
    for (;;) pause();
  }
  info->grandchild = grandchild;
  while (__atomic_load_n(&info->thread_tid, __ATOMIC_SEQ_CST) == 0) usleep(1000);
  (void)!write(ready_fd, "r", 1);
  for (;;) pause();
}

class Victim {
 public:
  Victim() {
    info_ = static_cast<VictimInfo*>(mmap(nullptr, sizeof(VictimInfo), PROT_READ | PROT_WRITE,
                                          MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    int p[2];
    EXPECT_EQ(pipe(p), 0);
    pid_ = fork();
    if (pid_ == 0) {
      close(p[0]);
      victim_main(info_, p[1]);
    }
    close(p[1]);
    char c;
    EXPECT_EQ(read(p[0], &c, 1), 1);
    close(p[0]);
  }
  ~Victim() {
    if (info_->grandchild > 0) kill(info_->grandchild, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    munmap(info_, sizeof(VictimInfo));
  }
  pid_t pid() const { return pid_; }
  const VictimInfo& info() const { return *info_; }

 private:
  pid_t pid_;
  VictimInfo* info_;
};

const MapEntry* find_map(const std::vector<MapEntry>& maps, uint64_t addr) {
  for (const auto& m : maps)
    if (m.start <= addr && addr < m.end) return &m;
  return nullptr;
}

TEST(ProcLive, SmapsShowsMapsPlusVmFlags) {
  Victim v;
  auto maps = read_maps(v.pid());
  auto smaps = read_smaps(v.pid());
  ASSERT_TRUE(maps.ok()) << maps.error().message;
  ASSERT_TRUE(smaps.ok()) << smaps.error().message;
  ASSERT_EQ(maps->size(), smaps->size());
  for (size_t i = 0; i < maps->size(); ++i) {
    EXPECT_EQ((*maps)[i].start, (*smaps)[i].start);
    EXPECT_EQ((*maps)[i].path, (*smaps)[i].path);
    EXPECT_FALSE((*maps)[i].vm_flags.has_value());
    EXPECT_TRUE((*smaps)[i].vm_flags.has_value());
  }
  const MapEntry* locked = find_map(*smaps, v.info().locked_addr);
  ASSERT_NE(locked, nullptr);
  EXPECT_TRUE(locked->vm_flags->has(VmFlag::lo));
  EXPECT_EQ(locked->rss_kb * 1024, static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  const MapEntry* nodump = find_map(*smaps, v.info().dontdump_addr);
  ASSERT_NE(nodump, nullptr);
  EXPECT_TRUE(nodump->vm_flags->has(VmFlag::dd));
  EXPECT_EQ(nodump->prot, PROT_READ);
  const MapEntry* file = find_map(*smaps, v.info().deleted_file_addr);
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->path, kDeletedPath);
  EXPECT_TRUE(file->deleted);
  EXPECT_TRUE(file->shared);
  EXPECT_EQ(file->kind, MapKind::file);
  EXPECT_TRUE(std::any_of(smaps->begin(), smaps->end(), [](const MapEntry& m) {
    return m.kind == MapKind::stack && m.vm_flags->has(VmFlag::gd);
  }));
  EXPECT_TRUE(std::any_of(smaps->begin(), smaps->end(),
                          [](const MapEntry& m) { return m.kind == MapKind::vdso; }));
}

TEST(ProcLive, StatusAndStatDescribeTheProcessAndItsThreads) {
  Victim v;
  auto status = read_status(v.pid());
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(status->pid, v.pid());
  EXPECT_EQ(status->ppid, getpid());
  EXPECT_EQ(status->threads, 2);
  EXPECT_EQ(status->umask, 027u);
  EXPECT_EQ(status->sig_blk, (uint64_t{1} << (SIGUSR1 - 1)) | (uint64_t{1} << (SIGHUP - 1)));
  EXPECT_EQ(status->ns_pid.back(), v.pid());
  auto thread = read_thread_status(v.pid(), v.info().thread_tid);
  ASSERT_TRUE(thread.ok()) << thread.error().message;
  EXPECT_EQ(thread->pid, v.info().thread_tid);
  EXPECT_EQ(thread->tgid, v.pid());

  auto stat = read_stat(v.pid());
  ASSERT_TRUE(stat.ok()) << stat.error().message;
  EXPECT_EQ(stat->pid, v.pid());
  EXPECT_EQ(stat->ppid, getpid());
  EXPECT_EQ(stat->num_threads, 2);
  EXPECT_LT(stat->arg_start, stat->arg_end);
  EXPECT_LE(stat->arg_end, stat->env_start);
  EXPECT_LT(stat->start_code, stat->end_code);
  auto tstat = read_thread_stat(v.pid(), v.info().thread_tid);
  ASSERT_TRUE(tstat.ok());
  EXPECT_EQ(tstat->pid, v.info().thread_tid);
  EXPECT_EQ(tstat->starttime >= stat->starttime, true);
}

TEST(ProcLive, ListsThreadsAndChildren) {
  Victim v;
  auto tids = list_threads(v.pid());
  ASSERT_TRUE(tids.ok());
  EXPECT_EQ(*tids, (std::vector<pid_t>{v.pid(), v.info().thread_tid}));
  auto children = list_children(v.pid());
  ASSERT_TRUE(children.ok()) << children.error().message;
  EXPECT_EQ(*children, std::vector<pid_t>{v.info().grandchild});
  auto scanned = list_children_by_scan(v.pid());
  ASSERT_TRUE(scanned.ok());
  EXPECT_EQ(*scanned, std::vector<pid_t>{v.info().grandchild});
}

TEST(ProcLive, FdinfoOfEventfdEpollSignalfdTimerfdAndLock) {
  Victim v;
  const VictimInfo& in = v.info();
  auto fds = list_fds(v.pid());
  ASSERT_TRUE(fds.ok());
  for (int fd : {in.eventfd, in.epollfd, in.signalfd, in.timerfd, in.lockfd})
    EXPECT_TRUE(std::count(fds->begin(), fds->end(), fd)) << fd;
  EXPECT_EQ(*read_fd_link(v.pid(), in.eventfd), "anon_inode:[eventfd]");
  EXPECT_EQ(*read_fd_link(v.pid(), in.lockfd), std::string(kDeletedPath) + " (deleted)");

  auto efd = read_fdinfo(v.pid(), in.eventfd);
  ASSERT_TRUE(efd.ok()) << efd.error().message;
  EXPECT_EQ(efd->eventfd_count, 42u);
  EXPECT_EQ(efd->eventfd_semaphore, true);
  auto ep = read_fdinfo(v.pid(), in.epollfd);
  ASSERT_TRUE(ep.ok()) << ep.error().message;
  ASSERT_EQ(ep->epoll_targets.size(), 1u);
  EXPECT_EQ(ep->epoll_targets[0].tfd, in.eventfd);
  EXPECT_EQ(ep->epoll_targets[0].data, 0xabcdefu);
  EXPECT_EQ(ep->epoll_targets[0].events & EPOLLIN, static_cast<uint32_t>(EPOLLIN));
  EXPECT_EQ(ep->epoll_targets[0].ino, efd->ino);
  auto sfd = read_fdinfo(v.pid(), in.signalfd);
  ASSERT_TRUE(sfd.ok());
  EXPECT_EQ(sfd->sigmask, (uint64_t{1} << (SIGUSR1 - 1)) | (uint64_t{1} << (SIGHUP - 1)));
  auto tfd = read_fdinfo(v.pid(), in.timerfd);
  ASSERT_TRUE(tfd.ok());
  EXPECT_EQ(tfd->timer_clockid, CLOCK_MONOTONIC);
  EXPECT_EQ(tfd->timer_interval->sec, 2);
  EXPECT_GT(tfd->timer_value->sec, 900);
  auto lfd = read_fdinfo(v.pid(), in.lockfd);
  ASSERT_TRUE(lfd.ok());
  ASSERT_EQ(lfd->lock_lines.size(), 1u);
  auto lock = parse_lock_line(lfd->lock_lines[0]);
  ASSERT_TRUE(lock.ok()) << lock.error().message;
  EXPECT_EQ(lock->kind, "FLOCK");
  EXPECT_EQ(lock->access, "WRITE");
  EXPECT_EQ(lock->pid, v.pid());
  EXPECT_EQ(lock->inode, lfd->ino);

  auto locks = read_locks();
  ASSERT_TRUE(locks.ok()) << locks.error().message;
  EXPECT_TRUE(std::any_of(locks->begin(), locks->end(),
                          [&](const FileLock& l) { return l.pid == v.pid(); }));
}

TEST(ProcLive, TimersAuxvLinksAndPersonality) {
  Victim v;
  auto timers = read_timers(v.pid());
  ASSERT_TRUE(timers.ok()) << timers.error().message;
  ASSERT_EQ(timers->size(), 1u);
  EXPECT_EQ((*timers)[0].signal, SIGUSR1);
  EXPECT_EQ((*timers)[0].clock_id, CLOCK_MONOTONIC);
  EXPECT_EQ((*timers)[0].notify, "signal");
  auto auxv = read_auxv(v.pid());
  ASSERT_TRUE(auxv.ok()) << auxv.error().message;
  EXPECT_TRUE(
      std::count(auxv->begin(), auxv->end(), AuxvEntry{6 /* AT_PAGESZ */, sysconf(_SC_PAGESIZE)}));
  EXPECT_EQ(*read_exe(v.pid()), *read_exe(getpid()));
  EXPECT_EQ(*read_cwd(v.pid()), *read_cwd(getpid()));
  EXPECT_EQ(*read_root(v.pid()), "/");
  EXPECT_EQ(*read_cmdline(v.pid()), *read_cmdline(getpid()));
  EXPECT_EQ(*read_personality(v.pid()), 0u);
}

TEST(ProcLive, ErrorsNameTheFileAndSayTheProcessIsGone) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  auto maps = read_maps(pid);
  ASSERT_FALSE(maps.ok());
  EXPECT_EQ(maps.error().message, fmt::format("read /proc/{}/maps: No such process", pid));
  EXPECT_EQ(maps.error().errnum, ESRCH);
  auto st = read_status(pid);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().errnum, ESRCH);
}

}  // namespace
}  // namespace ckpt::proc
