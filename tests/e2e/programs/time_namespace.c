// A process in a time namespace of its own (as `unshare -T --monotonic 1000` makes one), with a
// child forked into it. After the restore both are still in one namespace that is not their
// caller's, with the same clock offsets: CLOCK_MONOTONIC and CLOCK_BOOTTIME did not go back by
// the offsets (a restore into ckpt's namespace would take 1000 s and 2000 s from them).
#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>

#include "e2e_prog.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static double seconds(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

// "monotonic 1000 0" and "boottime 2000 0" among /proc/self/timens_offsets' lines.
static int offsets_kept(void) {
  char text[256] = {0};
  int fd = open("/proc/self/timens_offsets", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
  if (fd >= 0) close(fd);
  if (n <= 0) return 0;
  long long mono = -1, boot = -1, ns1 = -1, ns2 = -1;
  char* b = strstr(text, "boottime");
  return sscanf(text, "monotonic %lld %lld", &mono, &ns1) == 2 && b &&
         sscanf(b, "boottime %lld %lld", &boot, &ns2) == 2 && mono == 1000 && boot == 2000 &&
         ns1 == 0 && ns2 == 0;
}

int main(void) {
  e2e_setup();
  char caller[64];
  e2e_ns_link(getppid(), "time", caller, sizeof caller);
  E2E_SYS(unshare(CLONE_NEWTIME));
  int offsets = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
  E2E_SYS(offsets);
  const char* text = "monotonic 1000 0\nboottime 2000 0\n";
  E2E_CHECK(write(offsets, text, strlen(text)) == (ssize_t)strlen(text), "offsets not written");
  close(offsets);
  int ns = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
  E2E_SYS(ns);
  E2E_SYS(setns(ns, CLONE_NEWTIME));
  close(ns);
  double mono_before = seconds(CLOCK_MONOTONIC), boot_before = seconds(CLOCK_BOOTTIME);
  E2E_CHECK(mono_before >= 1000 && boot_before >= 2000, "clocks %.1f %.1f without the offsets",
            mono_before, boot_before);
  int release;
  pid_t child = e2e_fork_held(&release);
  if (child == 0) _exit(offsets_kept() ? 0 : 1);
  e2e_ready();
  e2e_wait_go();

  double mono_after = seconds(CLOCK_MONOTONIC), boot_after = seconds(CLOCK_BOOTTIME);
  E2E_CHECK(mono_after >= mono_before, "CLOCK_MONOTONIC went back from %.1f to %.1f", mono_before,
            mono_after);
  E2E_CHECK(boot_after >= boot_before, "CLOCK_BOOTTIME went back from %.1f to %.1f", boot_before,
            boot_after);
  E2E_CHECK(offsets_kept(), "the time namespace's offsets are not 1000 s and 2000 s");
  char mine[64], theirs[64], now_caller[64];
  e2e_ns_link(getpid(), "time", mine, sizeof mine);
  e2e_ns_link(child, "time", theirs, sizeof theirs);
  e2e_ns_link(getppid(), "time", now_caller, sizeof now_caller);
  E2E_CHECK(strcmp(mine, theirs) == 0, "the child is in %s, the process in %s", theirs, mine);
  E2E_CHECK(strcmp(mine, now_caller) != 0 && strcmp(mine, caller) != 0,
            "the process is in its caller's time namespace %s", mine);
  E2E_SYS(write(release, "g", 1));
  int st = -1;
  E2E_CHECK(waitpid(child, &st, 0) == child && st == 0,
            "the child's namespace has other offsets (0x%x)", st);
  return e2e_finish();
}
