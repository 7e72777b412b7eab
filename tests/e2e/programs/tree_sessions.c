// Sessions and process groups that only helper processes can rebuild (issue 11, point 3). The
// root is a child subreaper, so that what its children leave behind stays in the tree:
//   B   a daemon that double-forked: in the session (and group) of A, which has exited;
//   B1  B's child, leading its own group in that session;
//   K   in a session whose leader has exited and a group whose leader has exited (two helpers);
//   D   in the root's session, in a group whose leader C has exited;
//   F   in the group of E, a zombie (ended, not yet waited for);
//   G1  in the group of G2, its younger sibling, created after it by the restore;
//   P   leads a session it made after forking Q; Q stays in the root's session and group.
// Each member records its pid, parent, group and session before READY and checks them after the
// restore; the root also compares them from outside, and E must still be its zombie child.
#include <sys/prctl.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define MEMBERS 9

static int ctl_fd, ready_fd;
static pid_t root_pid;

// A member: once its parent is the one it is meant to have, records where it is, says ready,
// waits on the control pipe (there at dump time) and checks it is still there.
__attribute__((noreturn)) static void member(const char* name, pid_t parent, pid_t child) {
  while (getppid() != parent) usleep(1000);
  pid_t me = getpid(), pgid = getpgid(0), sid = getsid(0);
  E2E_CHECK(write(ready_fd, "r", 1) == 1, "%s ready: %s", name, strerror(errno));
  char c = 0;
  E2E_CHECK(read(ctl_fd, &c, 1) == 1 && c == 'g', "%s: control pipe: %s", name, strerror(errno));
  E2E_CHECK(getpid() == me && getppid() == parent, "%s: pid %d parent %d, was %d %d", name,
            (int)getpid(), (int)getppid(), (int)me, (int)parent);
  E2E_CHECK(getpgid(0) == pgid && getsid(0) == sid,
            "%s: group %d session %d, recorded group %d session %d", name, (int)getpgid(0),
            (int)getsid(0), (int)pgid, (int)sid);
  if (child > 0) {
    int st = 0;
    E2E_CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "%s's child ended with status 0x%x", name, st);
  }
  _exit(e2e_failures ? 1 : 0);
}

static void wait_ok(pid_t pid, const char* what) {
  int st = 0;
  E2E_CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "%s ended with status 0x%x", what, st);
}

// B (and B1): the classic daemon: fork, setsid, fork, the middle one exits.
static pid_t daemon_b(void) {
  pid_t a = fork();
  E2E_SYS(a);
  if (a != 0) return a;
  E2E_SYS(setsid());
  if (fork() != 0) _exit(0);
  pid_t b = getpid();
  pid_t b1 = fork();
  E2E_SYS(b1);
  if (b1 == 0) {
    E2E_SYS(setpgid(0, 0));
    member("B1", b, -1);
  }
  member("B", root_pid, b1);
}

// K: a session and a group whose leaders have both exited.
static pid_t orphan_k(void) {
  pid_t a = fork();
  E2E_SYS(a);
  if (a != 0) return a;
  E2E_SYS(setsid());
  pid_t h = fork();
  E2E_SYS(h);
  if (h == 0) {
    E2E_SYS(setpgid(0, 0));
    if (fork() == 0) member("K", root_pid, -1);
    _exit(0);
  }
  wait_ok(h, "K's group leader");
  _exit(0);
}

// D: in a group whose leader C has exited.
static pid_t orphan_d(void) {
  pid_t c = fork();
  E2E_SYS(c);
  if (c != 0) return c;
  E2E_SYS(setpgid(0, 0));
  if (fork() == 0) member("D", root_pid, -1);
  _exit(0);
}

// F: in the group of E, which stays a zombie.
static pid_t zombie_e(void) {
  pid_t e = fork();
  E2E_SYS(e);
  if (e == 0) {
    E2E_SYS(setpgid(0, 0));
    if (fork() == 0) member("F", root_pid, -1);
    _exit(7);
  }
  return e;
}

// G1 joins the group of G2, forked after it.
static void later_leader(void) {
  int go[2], led[2];
  E2E_SYS(pipe(go));
  E2E_SYS(pipe(led));
  pid_t g1 = fork();
  E2E_SYS(g1);
  if (g1 == 0) {
    char c;
    E2E_CHECK(read(go[0], &c, 1) == 1, "G1: wait for its group: %s", strerror(errno));
    member("G1", root_pid, -1);
  }
  pid_t g2 = fork();
  E2E_SYS(g2);
  if (g2 == 0) {
    E2E_SYS(setpgid(0, 0));
    E2E_CHECK(write(led[1], "x", 1) == 1, "G2: %s", strerror(errno));
    member("G2", root_pid, -1);
  }
  char c;
  E2E_CHECK(read(led[0], &c, 1) == 1, "wait for G2: %s", strerror(errno));
  E2E_SYS(setpgid(g1, g2));
  E2E_CHECK(write(go[1], "y", 1) == 1, "G1 go: %s", strerror(errno));
}

// P makes its own session after forking Q, which stays in the root's.
static void early_q(void) {
  pid_t p = fork();
  E2E_SYS(p);
  if (p != 0) return;
  pid_t q = fork();
  E2E_SYS(q);
  if (q == 0) member("Q", getppid(), -1);
  E2E_SYS(setsid());
  member("P", root_pid, q);
}

static pid_t children_of_root(pid_t* out, int max) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)root_pid, (int)root_pid);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  int count = 0;
  for (char* s = strtok(buf, " \n"); s && count < max; s = strtok(NULL, " \n"))
    out[count++] = (pid_t)atoi(s);
  return count;
}

int main(void) {
  e2e_setup();
  root_pid = getpid();
  E2E_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1));
  int ctl[2], ready[2];
  E2E_SYS(pipe(ctl));
  E2E_SYS(pipe(ready));
  ctl_fd = ctl[0], ready_fd = ready[1];
  pid_t e = zombie_e();
  pid_t middle[] = {daemon_b(), orphan_k(), orphan_d()};
  later_leader();
  early_q();
  for (int i = 0; i < MEMBERS; ++i) {
    char c = 0;
    if (read(ready[0], &c, 1) != 1) {
      e2e_say("FAIL only %d of %d members got ready", i, MEMBERS);
      return 1;
    }
  }
  for (int i = 0; i < 3; ++i) wait_ok(middle[i], "a process that had to exit");
  pid_t kids[32], groups[32], sessions[32];
  int n = children_of_root(kids, 32);
  for (int i = 0; i < n; ++i) groups[i] = getpgid(kids[i]), sessions[i] = getsid(kids[i]);
  e2e_ready();
  e2e_wait_go();

  for (int i = 0; i < n; ++i)
    E2E_CHECK(getpgid(kids[i]) == groups[i] && getsid(kids[i]) == sessions[i],
              "child %d: group %d session %d, was %d %d", (int)kids[i], (int)getpgid(kids[i]),
              (int)getsid(kids[i]), (int)groups[i], (int)sessions[i]);
  E2E_CHECK(write(ctl[1], "ggggggggg", MEMBERS) == MEMBERS, "wake the members: %s",
            strerror(errno));
  int st = 0;
  E2E_CHECK(waitpid(e, &st, 0) == e && WIFEXITED(st) && WEXITSTATUS(st) == 7,
            "the zombie E ended with status 0x%x", st);
  for (int i = 0; i < n; ++i)
    if (kids[i] != e) wait_ok(kids[i], "a member");
  return e2e_finish();
}
