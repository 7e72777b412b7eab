#include "resources/lazy_guard.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/guard_process.hpp"
#include "common/log.hpp"

namespace ckpt::lazy_pages {
namespace {

struct Message {
  char op;  // 'W' watch (with the fds), 'F' forget, 'D' done
  uint32_t id;
  pid_t pid;
};

struct Watched {
  uint32_t id;
  int uffd;
  int pidfd;  // -1 for a child forked since the restore (killed as a descendant)
};

// The guard's state lives in static storage: it must not allocate (forked from threads).
constexpr size_t kMaxWatched = 4096;
constexpr size_t kMaxVictims = 16384;
Watched watched[kMaxWatched];
size_t watched_count = 0;
pid_t victims[kMaxVictims];
size_t victim_count = 0;

// "/proc/<a>/task/<b>/children" without the C library's formatting.
char* put_number(char* at, long n) {
  char digits[24];
  int len = 0;
  do digits[len++] = static_cast<char>('0' + n % 10);
  while ((n /= 10) > 0);
  while (len > 0) *at++ = digits[--len];
  return at;
}

char* put_text(char* at, const char* text) {
  while (*text) *at++ = *text++;
  return at;
}

void add_victim(pid_t pid) {
  for (size_t i = 0; i < victim_count; ++i)
    if (victims[i] == pid) return;
  if (victim_count < kMaxVictims) victims[victim_count++] = pid;
}

// Adds the children of every thread of `pid`.
void add_children(pid_t pid) {
  char path[96];
  *put_number(put_text(path, "/proc/"), pid) = '\0';
  char* end = put_text(path + std::strlen(path), "/task");
  *end = '\0';
  int dir = static_cast<int>(::syscall(SYS_open, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir < 0) return;
  alignas(8) char entries[4096];
  for (;;) {
    long got = ::syscall(SYS_getdents64, dir, entries, sizeof entries);
    if (got <= 0) break;
    for (long off = 0; off < got;) {
      auto* d = reinterpret_cast<struct dirent64*>(entries + off);
      off += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
      char* p = put_text(put_text(put_text(end, "/"), d->d_name), "/children");
      *p = '\0';
      int fd = static_cast<int>(::syscall(SYS_open, path, O_RDONLY | O_CLOEXEC));
      if (fd < 0) continue;
      char text[4096];
      long n = ::syscall(SYS_read, fd, text, sizeof text - 1);
      ::syscall(SYS_close, fd);
      long child = 0;
      for (long i = 0; i < n; ++i) {
        if (text[i] >= '0' && text[i] <= '9') {
          child = child * 10 + (text[i] - '0');
        } else if (child > 0) {
          add_victim(static_cast<pid_t>(child));
          child = 0;
        }
      }
    }
  }
  ::syscall(SYS_close, dir);
}

// ckpt is gone before every page was in: the restored processes and everything they started
// die. Each is stopped before its children are listed, so that none escapes by forking.
[[noreturn]] void kill_everything() {
  for (size_t i = 0; i < victim_count; ++i) {
    ::syscall(SYS_kill, victims[i], SIGSTOP);
    add_children(victims[i]);
  }
  for (size_t i = 0; i < watched_count; ++i)
    if (watched[i].pidfd >= 0)
      ::syscall(SYS_pidfd_send_signal, watched[i].pidfd, SIGKILL, nullptr, 0);
  for (size_t i = 0; i < victim_count; ++i) ::syscall(SYS_kill, victims[i], SIGKILL);
  ::syscall(SYS_exit_group, 1);
  __builtin_unreachable();
}

void take(const Message& m, const int* fds, size_t nfds) {
  if (m.op == 'W' && nfds >= 1 && watched_count < kMaxWatched) {
    watched[watched_count++] = {m.id, fds[0], nfds >= 2 ? fds[1] : -1};
    if (m.pid > 0) add_victim(m.pid);
    return;
  }
  for (size_t i = 0; i < nfds; ++i) ::syscall(SYS_close, fds[i]);
  if (m.op != 'F') return;
  for (size_t i = 0; i < watched_count; ++i) {
    if (watched[i].id != m.id) continue;
    ::syscall(SYS_close, watched[i].uffd);
    watched[i].uffd = -1;
  }
}

[[noreturn]] void guard_main(int sock) {
  // Signals meant for ckpt's terminal or group are not for the guard.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGALRM})
    ::sigaction(sig, &ignore, nullptr);
  for (;;) {
    Message m{};
    iovec iov{&m, sizeof m};
    alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))];
    msghdr h{};
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    h.msg_control = control;
    h.msg_controllen = sizeof control;
    long got = ::syscall(SYS_recvmsg, sock, &h, MSG_CMSG_CLOEXEC);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) kill_everything();  // ckpt's end closed before "done"
    if (m.op == 'D') ::syscall(SYS_exit_group, 0);
    int fds[2];
    size_t nfds = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < n && nfds < 2; ++i)
        std::memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    take(m, fds, nfds);
  }
}

}  // namespace

Result<Guard> Guard::start() {
  CKPT_TRY_ASSIGN(GuardProcess p, fork_guard("lazy restore guard", guard_main));
  Guard g;
  g.sock_ = std::move(p.channel);
  g.pidfd_ = ScopedFd(static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0)));
  return g;
}

Guard::~Guard() {
  sock_.reset();  // the guard ends: done, or (not done) killing what it watches
  if (pidfd_) (void)::waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), nullptr, WEXITED);
}

Status Guard::watch(uint32_t id, int uffd, pid_t pid) {
  ScopedFd pidfd;
  if (pid > 0) pidfd = ScopedFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  Message m{'W', id, pid};
  int fds[2] = {uffd, pidfd.get()};
  return send_with_fds(sock_.get(), &m, sizeof m, std::span(fds, pidfd ? 2 : 1),
                       fmt::format("lazy restore guard: handing over pid {}", pid));
}

void Guard::forget(uint32_t id) {
  Message m{'F', id, 0};
  (void)::send(sock_.get(), &m, sizeof m, MSG_NOSIGNAL);
}

void Guard::done() {
  Message m{'D', 0, 0};
  (void)::send(sock_.get(), &m, sizeof m, MSG_NOSIGNAL);
}

}  // namespace ckpt::lazy_pages
