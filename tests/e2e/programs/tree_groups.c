// Process groups and sessions inside a tree: child A leads its own group (setpgid(0, 0)) with
// its child A1 in it, child B leads its own session (setsid()) with its child B1 in it, child D
// stays in the parent's group. Each records its group and session before READY; after the
// restore each must be in the same ones, with the same pid and parent. Children report through
// their exit status; the parent also looks at its children from outside.
#include <sys/wait.h>

#include "e2e_prog.h"

enum role { ROLE_A, ROLE_A1, ROLE_B, ROLE_B1, ROLE_D };
static const char* const role_names[] = {"A", "A1", "B", "B1", "D"};
#define MEMBERS 5  // processes below the parent

static int ctl_fd, ready_fd;

// Where a member must be, relative to its parent (which is in the tree too).
static void check_place(enum role r, const char* when) {
  pid_t me = getpid(), parent = getppid(), pgid = getpgid(0), sid = getsid(0);
  pid_t want_pgid = 0, want_sid = 0;
  switch (r) {
    case ROLE_A:
      want_pgid = me, want_sid = getsid(parent);
      break;
    case ROLE_A1:
      want_pgid = parent, want_sid = getsid(parent);
      break;
    case ROLE_B:
      want_pgid = me, want_sid = me;
      break;
    case ROLE_B1:
      want_pgid = parent, want_sid = parent;
      break;
    case ROLE_D:
      want_pgid = getpgid(parent), want_sid = getsid(parent);
      break;
  }
  E2E_CHECK(pgid == want_pgid && sid == want_sid,
            "%s %s: pid %d, parent %d: group %d session %d, want group %d session %d",
            role_names[r], when, (int)me, (int)parent, (int)pgid, (int)sid, (int)want_pgid,
            (int)want_sid);
}

static pid_t spawn_member(enum role r);

// A member: takes its place, records it, says ready, waits on the control pipe (there at dump
// time), then checks it is where it was.
static void member(enum role r, pid_t parent) {
  if (r == ROLE_A) E2E_SYS(setpgid(0, 0));
  if (r == ROLE_B) E2E_SYS(setsid());
  pid_t sub = -1;
  if (r == ROLE_A) sub = spawn_member(ROLE_A1);
  if (r == ROLE_B) sub = spawn_member(ROLE_B1);
  pid_t me = getpid(), pgid = getpgid(0), sid = getsid(0);
  check_place(r, "before");
  E2E_CHECK(write(ready_fd, "r", 1) == 1, "%s ready: %s", role_names[r], strerror(errno));
  char c = 0;
  E2E_CHECK(read(ctl_fd, &c, 1) == 1 && c == 'g', "%s: control pipe: '%c' %s", role_names[r], c,
            strerror(errno));
  E2E_CHECK(getpid() == me, "%s is pid %d, was %d", role_names[r], (int)getpid(), (int)me);
  E2E_CHECK(getppid() == parent, "%s's parent is %d, want %d", role_names[r], (int)getppid(),
            (int)parent);
  E2E_CHECK(getpgid(0) == pgid && getsid(0) == sid,
            "%s: group %d session %d, recorded group %d session %d", role_names[r], (int)getpgid(0),
            (int)getsid(0), (int)pgid, (int)sid);
  check_place(r, "after");
  if (sub > 0) {
    int st = 0;
    E2E_CHECK(waitpid(sub, &st, 0) == sub && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "%s's child ended with status 0x%x", role_names[r], st);
  }
  _exit(e2e_failures ? 1 : 0);
}

static pid_t spawn_member(enum role r) {
  pid_t parent = getpid();
  pid_t pid = fork();
  E2E_SYS(pid);
  if (pid == 0) member(r, parent);
  return pid;
}

struct outside_view {
  pid_t a_pgid, a_sid, b_pgid, b_sid, d_pgid, d_sid;
};

static struct outside_view look(pid_t a, pid_t b, pid_t d) {
  struct outside_view v = {getpgid(a), getsid(a), getpgid(b), getsid(b), getpgid(d), getsid(d)};
  return v;
}

int main(void) {
  e2e_setup();
  int ctl[2], ready[2];
  E2E_SYS(pipe(ctl));
  E2E_SYS(pipe(ready));
  ctl_fd = ctl[0], ready_fd = ready[1];
  pid_t a = spawn_member(ROLE_A), b = spawn_member(ROLE_B), d = spawn_member(ROLE_D);
  for (int i = 0; i < MEMBERS; ++i) {
    char c = 0;
    if (read(ready[0], &c, 1) != 1) {
      e2e_say("FAIL only %d of %d members got ready", i, MEMBERS);
      return 1;
    }
  }
  pid_t pgid = getpgid(0), sid = getsid(0);
  struct outside_view before = look(a, b, d);
  E2E_CHECK(before.a_pgid == a && before.a_sid == sid && before.b_pgid == b && before.b_sid == b &&
                before.d_pgid == pgid && before.d_sid == sid,
            "the members are not where this test put them");
  e2e_ready();
  e2e_wait_go();

  struct outside_view after = look(a, b, d);
  E2E_CHECK(memcmp(&before, &after, sizeof before) == 0,
            "seen from the parent: A group %d session %d, B group %d session %d, D group %d "
            "session %d; before: A %d %d, B %d %d, D %d %d",
            (int)after.a_pgid, (int)after.a_sid, (int)after.b_pgid, (int)after.b_sid,
            (int)after.d_pgid, (int)after.d_sid, (int)before.a_pgid, (int)before.a_sid,
            (int)before.b_pgid, (int)before.b_sid, (int)before.d_pgid, (int)before.d_sid);
  E2E_CHECK(write(ctl[1], "ggggg", MEMBERS) == MEMBERS, "wake the members: %s", strerror(errno));
  pid_t kids[] = {a, b, d};
  for (int i = 0; i < 3; ++i) {
    int st = 0;
    E2E_CHECK(waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child %d ended with status 0x%x", (int)kids[i], st);
  }
  return e2e_finish();
}
