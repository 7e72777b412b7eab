// POSIX message queues held across a restore: a named one of small limits and mode 0640 with
// messages of three priorities, open twice (a write-only nonblocking second open file) and
// shared with a child; an unlinked one holding a message; an empty nonblocking one. After the
// restore the messages must come out in the order and with the priorities they had, the limits,
// mode and flags must be theirs, the named queue must be the one its name opens, the child's
// message must reach the parent through the same queue, and the unlinked one must stay
// unlinked. Prints "QUEUE NAME" before READY (tests/e2e/mqueue_test.cpp changes it meanwhile).
#include <fcntl.h>
#include <mqueue.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "e2e_prog.h"

static char named[64], gone[64];
static mqd_t q, q_write, q_gone, q_empty;

struct sent {
  const char* text;
  unsigned prio;
};
static const struct sent kSent[] = {
    {"low-1", 1}, {"high-1", 9}, {"low-2", 1}, {"mid", 5}, {"high-2", 9}};
static const struct sent kOut[] = {
    {"high-1", 9}, {"high-2", 9}, {"mid", 5}, {"low-1", 1}, {"low-2", 1}};

static void make_queues(void) {
  snprintf(named, sizeof named, "/ckpt-e2e-mq-%d", getpid());
  snprintf(gone, sizeof gone, "/ckpt-e2e-mq-gone-%d", getpid());
  struct mq_attr small = {.mq_maxmsg = 6, .mq_msgsize = 100};
  mode_t old = umask(0);
  E2E_SYS(q = mq_open(named, O_RDWR | O_CREAT | O_EXCL, 0640, &small));
  umask(old);
  E2E_SYS(q_write = mq_open(named, O_WRONLY | O_NONBLOCK));
  for (size_t i = 0; i < sizeof kSent / sizeof kSent[0]; ++i)
    E2E_SYS(mq_send(q_write, kSent[i].text, strlen(kSent[i].text), kSent[i].prio));
  E2E_SYS(q_gone = mq_open(gone, O_RDWR | O_CREAT | O_EXCL, 0600, NULL));
  E2E_SYS(mq_send(q_gone, "kept while unlinked", 19, 2));
  E2E_SYS(mq_unlink(gone));
  E2E_SYS(q_empty = mq_open(gone, O_RDWR | O_NONBLOCK | O_CREAT | O_EXCL, 0600, NULL));
  E2E_SYS(mq_unlink(gone));
}

static void check_named(void) {
  e2e_check_link(q, named);
  struct mq_attr a;
  E2E_SYS(mq_getattr(q, &a));
  E2E_CHECK(a.mq_maxmsg == 6 && a.mq_msgsize == 100 && a.mq_curmsgs == 5 && a.mq_flags == 0,
            "named queue: max %ld size %ld holds %ld flags %#lx", a.mq_maxmsg, a.mq_msgsize,
            a.mq_curmsgs, a.mq_flags);
  E2E_SYS(mq_getattr(q_write, &a));
  E2E_CHECK(a.mq_flags == O_NONBLOCK, "second open file's flags %#lx", a.mq_flags);
  E2E_CHECK((fcntl(q_write, F_GETFL) & O_ACCMODE) == O_WRONLY, "second open file not write-only");
  struct stat st, by_name;
  E2E_SYS(fstat(q, &st));
  E2E_CHECK((st.st_mode & 07777) == 0640, "named queue mode %o", st.st_mode & 07777);
  mqd_t again = mq_open(named, O_RDONLY);
  E2E_SYS(again);
  E2E_SYS(fstat(again, &by_name));
  E2E_CHECK(by_name.st_ino == st.st_ino, "its name opens another queue");
  mq_close(again);
  for (size_t i = 0; i < sizeof kOut / sizeof kOut[0]; ++i) {
    char buf[128] = "";
    unsigned prio = 0;
    ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
    if (n >= 0) buf[n] = 0;
    E2E_CHECK(n >= 0 && strcmp(buf, kOut[i].text) == 0 && prio == kOut[i].prio,
              "message %zu: '%s' priority %u, want '%s' priority %u", i, buf, prio, kOut[i].text,
              kOut[i].prio);
  }
}

// Shares the named queue's first open file; after the go sends through it.
static pid_t sharing_child(int* release) {
  pid_t pid = e2e_fork_held(release);
  if (pid == 0) _exit(mq_send(q, "from the child", 14, 3) == 0 ? 0 : 1);
  return pid;
}

static void check_child(int release, pid_t child) {
  E2E_SYS(write(release, "g", 1));
  int st = -1;
  E2E_CHECK(waitpid(child, &st, 0) == child && st == 0, "sharing child ended 0x%x", st);
  char buf[128] = "";
  unsigned prio = 0;
  struct timespec soon;
  clock_gettime(CLOCK_REALTIME, &soon);
  soon.tv_sec += 5;
  ssize_t n = mq_timedreceive(q, buf, sizeof buf, &prio, &soon);
  if (n >= 0) buf[n] = 0;
  E2E_CHECK(n == 14 && strcmp(buf, "from the child") == 0 && prio == 3,
            "the child's message came as '%s' (%zd bytes, priority %u)", buf, n, prio);
}

static void check_unlinked(void) {
  char want[80];
  snprintf(want, sizeof want, "%s (deleted)", gone);
  e2e_check_link(q_gone, want);
  e2e_check_link(q_empty, want);
  char buf[8192] = "";
  unsigned prio = 0;
  ssize_t n = mq_receive(q_gone, buf, sizeof buf, &prio);
  if (n >= 0) buf[n] = 0;
  E2E_CHECK(n == 19 && strcmp(buf, "kept while unlinked") == 0 && prio == 2,
            "unlinked queue gave '%s' priority %u", buf, prio);
  errno = 0;
  E2E_CHECK(mq_open(gone, O_RDONLY) < 0 && errno == ENOENT, "the unlinked queue has a name: %s",
            strerror(errno));
  errno = 0;
  E2E_CHECK(mq_receive(q_empty, buf, sizeof buf, &prio) < 0 && errno == EAGAIN,
            "the empty queue: %s", strerror(errno));
}

int main(void) {
  e2e_setup();
  make_queues();
  int release;
  pid_t child = sharing_child(&release);
  e2e_say("QUEUE %s", named);
  e2e_ready();
  e2e_wait_go();
  check_named();
  check_child(release, child);
  check_unlinked();
  mq_unlink(named);
  return e2e_finish();
}
