// Pidfds of every kind ckpt saves, each checked after the restore through what a program does
// with one: a nonblocking pidfd of a running child (watched by epoll, dup'ed, and inherited by a
// second child, so one open file held by two processes), a pidfd of a child that has exited but
// is not reaped (a zombie: waitid through it gives its status), a pidfd of a child already reaped
// (Pid -1: signals fail with ESRCH, poll says it ended, its exit status kept by the kernel since
// 6.15 comes back) and a thread pidfd of the program itself.
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define PIDFD_NONBLOCK_ O_NONBLOCK
#define PIDFD_THREAD_ O_EXCL
#define P_PIDFD_ 3
#define EPOLL_DATA 0xa11ceull

// struct pidfd_info of linux/pidfd.h (Linux 6.13; exit_code since 6.15).
struct pidfd_info_ {
  uint64_t mask, cgroupid;
  uint32_t ids[11];
  int32_t exit_code;
};
#define PIDFD_INFO_EXIT_ (1u << 3)
#define PIDFD_GET_INFO_ _IOWR(0xFF, 11, struct pidfd_info_)

static int pidfd_open_(pid_t pid, unsigned flags) {
  return (int)syscall(SYS_pidfd_open, pid, flags);
}

static int send_signal(int pidfd, int sig) {
  return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

// The "Pid:" of a pidfd's fdinfo, or -2.
static int fdinfo_pid(int fd) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE* f = fopen(path, "r");
  if (!f) return -2;
  int pid = -2;
  while (fgets(buf, sizeof buf, f))
    if (sscanf(buf, "Pid: %d", &pid) == 1) break;
  fclose(f);
  return pid;
}

// The exit status the kernel kept for a pidfd's process, or -1 when it keeps none.
static int kept_exit_status(int pidfd) {
  struct pidfd_info_ info;
  memset(&info, 0, sizeof info);
  info.mask = PIDFD_INFO_EXIT_;
  if (ioctl(pidfd, PIDFD_GET_INFO_, &info) < 0 || !(info.mask & PIDFD_INFO_EXIT_)) return -1;
  return info.exit_code;
}

// A child that exits `code` once a byte arrives on the pipe whose write end goes to *release.
static pid_t waiting_child(int* release, int code) {
  pid_t pid = e2e_fork_held(release);
  if (pid == 0) _exit(code);
  return pid;
}

static int running, running_dup, zombie, reaped, self, ep;
static pid_t running_pid, zombie_pid;
static int kept_before;

// Holds the running child's pidfd (inherited); once released reports whether it sees the
// parent's change to its status flags (one open file) and whether signal 0 reaches that child.
static pid_t sharing_child(int* release, int* report) {
  int rep[2];
  E2E_SYS(pipe(rep));
  pid_t pid = e2e_fork_held(release);
  if (pid == 0) {
    close(rep[0]);
    int answer[2] = {fcntl(running, F_GETFL) & O_NONBLOCK, send_signal(running, 0)};
    _exit(write(rep[1], answer, sizeof answer) == (ssize_t)sizeof answer ? 0 : 1);
  }
  close(rep[1]);
  *report = rep[0];
  return pid;
}

static void set_up(int* release_running) {
  running_pid = waiting_child(release_running, 5);
  E2E_SYS(running = pidfd_open_(running_pid, PIDFD_NONBLOCK_));
  E2E_SYS(running_dup = dup(running));
  E2E_SYS(ep = epoll_create1(EPOLL_CLOEXEC));
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EPOLL_DATA};
  E2E_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, running, &ev));

  zombie_pid = fork();
  E2E_SYS(zombie_pid);
  if (zombie_pid == 0) _exit(9);
  E2E_SYS(zombie = pidfd_open_(zombie_pid, 0));
  struct pollfd pf = {zombie, POLLIN, 0};
  E2E_SYS(poll(&pf, 1, 10000));  // it has exited: a zombie until waited for

  pid_t gone = fork();
  E2E_SYS(gone);
  if (gone == 0) _exit(3);
  E2E_SYS(reaped = pidfd_open_(gone, 0));
  E2E_SYS(waitpid(gone, NULL, 0));
  kept_before = kept_exit_status(reaped);

  E2E_SYS(self = pidfd_open_(getpid(), PIDFD_THREAD_));
}

static void check_what_they_name(void) {
  E2E_CHECK(fdinfo_pid(running) == running_pid, "running child's pidfd names %d, want %d",
            fdinfo_pid(running), (int)running_pid);
  E2E_CHECK(fdinfo_pid(running_dup) == running_pid, "its dup names %d", fdinfo_pid(running_dup));
  E2E_CHECK(fdinfo_pid(zombie) == zombie_pid, "zombie's pidfd names %d, want %d",
            fdinfo_pid(zombie), (int)zombie_pid);
  E2E_CHECK(fdinfo_pid(reaped) == -1, "reaped child's pidfd names %d, want -1", fdinfo_pid(reaped));
  E2E_CHECK(fdinfo_pid(self) == getpid(), "own pidfd names %d, want %d", fdinfo_pid(self),
            (int)getpid());
  E2E_CHECK(fcntl(running, F_GETFL) & O_NONBLOCK, "running child's pidfd lost PIDFD_NONBLOCK");
  E2E_CHECK(fcntl(self, F_GETFL) & PIDFD_THREAD_, "own pidfd lost PIDFD_THREAD");
  E2E_CHECK(fcntl(running, F_GETFD) == FD_CLOEXEC, "pidfd_open's close-on-exec lost");
  E2E_CHECK(fcntl(running_dup, F_GETFD) == 0, "the dup became close-on-exec");
  E2E_CHECK(send_signal(running, 0) == 0, "signal 0 to the running child: %s", strerror(errno));
  E2E_CHECK(send_signal(self, 0) == 0, "signal 0 to itself: %s", strerror(errno));
  errno = 0;
  E2E_CHECK(send_signal(reaped, 0) < 0 && errno == ESRCH,
            "signal 0 through the reaped child's pidfd: %s, want ESRCH", strerror(errno));
}

static void check_the_running_child(int release, int share_release, int share_report,
                                    pid_t sharer) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  errno = 0;
  E2E_CHECK(waitid(P_PIDFD_, (id_t)running, &si, WEXITED) < 0 && errno == EAGAIN,
            "waitid on the nonblocking pidfd of a running child: %s, want EAGAIN", strerror(errno));
  struct epoll_event got;
  E2E_CHECK(epoll_wait(ep, &got, 1, 0) == 0, "epoll reports the running child ended");
  // Blocking again: seen by the second child if they hold one open file.
  E2E_SYS(fcntl(running, F_SETFL, 0));
  E2E_SYS(write(share_release, "g", 1));
  int answer[2] = {-1, -1};
  E2E_CHECK(read(share_report, answer, sizeof answer) == (ssize_t)sizeof answer,
            "no report from the sharing child");
  E2E_CHECK(answer[0] == 0, "the sharing child's pidfd is still nonblocking: not one open file");
  E2E_CHECK(answer[1] == 0, "signal 0 from the sharing child failed");
  int st = -1;
  E2E_CHECK(waitpid(sharer, &st, 0) == sharer && st == 0, "sharing child ended 0x%x", st);

  E2E_SYS(write(release, "x", 1));
  int n = epoll_wait(ep, &got, 1, 10000);
  E2E_CHECK(n == 1 && got.data.u64 == EPOLL_DATA, "epoll_wait on the ended child: %d, data %#llx",
            n, (unsigned long long)got.data.u64);
  memset(&si, 0, sizeof si);
  int r = waitid(P_PIDFD_, (id_t)running, &si, WEXITED);
  E2E_CHECK(r == 0 && si.si_pid == running_pid && si.si_code == CLD_EXITED && si.si_status == 5,
            "waitid on the pidfd: %d (%s), pid %d code %d status %d", r, strerror(errno),
            (int)si.si_pid, si.si_code, si.si_status);
}

static void check_the_ended_children(void) {
  struct pollfd pf = {zombie, POLLIN, 0};
  E2E_CHECK(poll(&pf, 1, 0) == 1, "the zombie's pidfd does not poll as ended");
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r = waitid(P_PIDFD_, (id_t)zombie, &si, WEXITED);
  E2E_CHECK(r == 0 && si.si_pid == zombie_pid && si.si_status == 9,
            "waitid on the zombie's pidfd: %d (%s), pid %d status %d", r, strerror(errno),
            (int)si.si_pid, si.si_status);

  pf.fd = reaped;
  E2E_CHECK(poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN),
            "the reaped child's pidfd does not poll as ended");
  errno = 0;
  E2E_CHECK(waitid(P_PIDFD_, (id_t)reaped, &si, WEXITED | WNOHANG) < 0 && errno == ECHILD,
            "waitid on the reaped child's pidfd: %s, want ECHILD", strerror(errno));
  int kept = kept_exit_status(reaped);
  E2E_CHECK(kept == kept_before, "the reaped child's kept exit status is 0x%x, was 0x%x", kept,
            kept_before);
}

int main(void) {
  e2e_setup();
  int release_running, share_release, share_report;
  set_up(&release_running);
  pid_t sharer = sharing_child(&share_release, &share_report);
  e2e_ready();
  e2e_wait_go();
  check_what_they_name();
  check_the_running_child(release_running, share_release, share_report, sharer);
  check_the_ended_children();
  return e2e_finish();
}
