// Every per-thread and per-process setting a program can observe, set to non-default values that
// differ between threads, checked by each thread itself after restore: nice, scheduling policy,
// CPU affinity, timer slack, I/O priority, NUMA memory policy, parent-death signal, securebits
// (KEEP_CAPS), capabilities (all five sets) and names per thread; oom_score_adj, child subreaper
// and THP disable per process. Runs as root (the e2e suite does): dropping capabilities and
// securebits other than KEEP_CAPS need CAP_SETPCAP.
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "e2e_prog.h"

#define IOPRIO(cls, level) (((cls) << 13) | (level))
#define SECBIT_KEEP_CAPS_ (1 << 4)
#define SECBIT_NO_SETUID_FIXUP_ (1 << 2)
#define MPOL_PREFERRED_ 1
#define MPOL_BIND_ 2

struct caps {
  unsigned long long eff, prm, inh;
};

struct want {
  const char* name;
  int nice;
  int policy;  // SCHED_OTHER, SCHED_BATCH, SCHED_IDLE
  int cpu;     // -1: every CPU
  unsigned long slack_ns;
  int ioprio;
  int mempolicy;  // -1: leave the default
  int pdeathsig;
  int securebits;
  int drop_bounding;  // drop every bounding capability but CAP_SETPCAP..CAP_NET_RAW
  int ambient;        // raise CAP_NET_BIND_SERVICE as an ambient capability
};

// The main thread keeps the defaults of its scheduling: the runner's SIGUSR2 must reach it
// quickly. Signals that the parent-death signal uses are ignored by default (SIGURG, SIGWINCH):
// the restored process's parent is the restorer, which exits after a --detach restore.
static const struct want wants[] = {
    {"main", 3, SCHED_OTHER, -1, 1000000, IOPRIO(2, 6), -1, SIGURG, SECBIT_KEEP_CAPS_, 0, 0},
    {"batch", 7, SCHED_BATCH, 0, 2000000, IOPRIO(3, 0), MPOL_PREFERRED_, SIGWINCH, 0, 1, 0},
    {"idle", 12, SCHED_IDLE, 0, 70000, IOPRIO(2, 1), MPOL_BIND_, 0,
     SECBIT_NO_SETUID_FIXUP_ | SECBIT_KEEP_CAPS_, 1, 1},
};
#define NTHREADS (int)(sizeof wants / sizeof wants[0])

static volatile int checked_go;
static int applied;  // workers that have set theirs

static struct caps get_caps(void) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  syscall(SYS_capget, &h, d);
  struct caps c = {d[0].effective | (uint64_t)d[1].effective << 32,
                   d[0].permitted | (uint64_t)d[1].permitted << 32,
                   d[0].inheritable | (uint64_t)d[1].inheritable << 32};
  return c;
}

static int set_caps(struct caps c) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {
      {(uint32_t)c.eff, (uint32_t)c.prm, (uint32_t)c.inh},
      {(uint32_t)(c.eff >> 32), (uint32_t)(c.prm >> 32), (uint32_t)(c.inh >> 32)}};
  return (int)syscall(SYS_capset, &h, d);
}

static unsigned long long bounding(void) {
  unsigned long long b = 0;
  for (int cap = 0; cap < 64; ++cap)
    if (prctl(PR_CAPBSET_READ, cap) == 1) b |= 1ull << cap;
  return b;
}

static unsigned long long ambient(void) {
  unsigned long long a = 0;
  for (int cap = 0; cap < 64; ++cap)
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1) a |= 1ull << cap;
  return a;
}

static const uint64_t kKeptBounding = (1ull << CAP_SETPCAP) | (1ull << CAP_NET_BIND_SERVICE) |
                                      (1ull << CAP_NET_RAW) | (1ull << CAP_SYS_NICE);

static void apply(const struct want* w) {
  pid_t tid = (pid_t)syscall(SYS_gettid);
  E2E_SYS(prctl(PR_SET_NAME, w->name));
  E2E_SYS(prctl(PR_SET_TIMERSLACK, w->slack_ns));
  E2E_SYS(syscall(SYS_ioprio_set, 1, tid, w->ioprio));
  if (w->mempolicy >= 0) {
    unsigned long node0 = 1;
    // A kernel without NUMA has no policies to set (nor to lose).
    if (syscall(SYS_set_mempolicy, w->mempolicy, &node0, 2) < 0 && errno != ENOSYS) {
      e2e_say("FAIL set_mempolicy: %s", strerror(errno));
      exit(1);
    }
  }
  if (w->cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->cpu, &set);
    E2E_SYS(sched_setaffinity(0, sizeof set, &set));
  }
  struct sched_param none = {0};
  E2E_SYS(sched_setscheduler(0, w->policy, &none));
  E2E_SYS(setpriority(PRIO_PROCESS, (id_t)tid, w->nice));
  E2E_SYS(prctl(PR_SET_PDEATHSIG, w->pdeathsig));
  if (w->ambient) {
    struct caps c = get_caps();
    c.inh |= 1ull << CAP_NET_BIND_SERVICE;
    E2E_SYS(set_caps(c));
    E2E_SYS(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0));
  }
  if (w->drop_bounding)
    for (int cap = 0; cap < 64; ++cap)
      if (!(kKeptBounding >> cap & 1) && prctl(PR_CAPBSET_READ, cap) == 1)
        E2E_SYS(prctl(PR_CAPBSET_DROP, cap));
  E2E_SYS(prctl(PR_SET_SECUREBITS, w->securebits));
  if (w->drop_bounding) {
    // Keep only what the bounding set keeps, and not CAP_SETPCAP in the effective set.
    struct caps c = get_caps();
    c.prm &= kKeptBounding;
    c.eff = c.prm & ~(1ull << CAP_SETPCAP);
    E2E_SYS(set_caps(c));
  }
}

struct seen {
  char name[17];
  int nice, policy, ncpus, cpu0, ioprio, mode, pdeathsig, securebits;
  unsigned long slack, nodes[16];
  struct caps caps;
  unsigned long long bounding, ambient;
};

static struct seen observe(void) {
  struct seen s;
  memset(&s, 0, sizeof s);
  pid_t tid = (pid_t)syscall(SYS_gettid);
  prctl(PR_GET_NAME, s.name);
  errno = 0;
  s.nice = getpriority(PRIO_PROCESS, (id_t)tid);
  s.policy = sched_getscheduler(0);
  cpu_set_t set;
  sched_getaffinity(0, sizeof set, &set);
  s.ncpus = CPU_COUNT(&set);
  s.cpu0 = CPU_ISSET(0, &set);
  s.slack = (unsigned long)prctl(PR_GET_TIMERSLACK);
  s.ioprio = (int)syscall(SYS_ioprio_get, 1, tid);
  syscall(SYS_get_mempolicy, &s.mode, s.nodes, 1024, NULL, 0);
  prctl(PR_GET_PDEATHSIG, &s.pdeathsig);
  s.securebits = prctl(PR_GET_SECUREBITS);
  s.caps = get_caps();
  s.bounding = bounding();
  s.ambient = ambient();
  return s;
}

static void check(int i, const struct seen* before, const struct seen* after) {
  const char* n = wants[i].name;
#define SAME(field, fmt)                                                                   \
  E2E_CHECK(before->field == after->field, "thread %s: " #field " " fmt " became " fmt, n, \
            before->field, after->field)
  E2E_CHECK(strcmp(before->name, after->name) == 0, "thread %.16s: name became %.16s", n,
            after->name);
  SAME(nice, "%d");
  SAME(policy, "%d");
  SAME(ncpus, "%d");
  SAME(cpu0, "%d");
  SAME(slack, "%lu");
  SAME(ioprio, "%#x");
  SAME(mode, "%d");
  SAME(nodes[0], "%#lx");
  SAME(pdeathsig, "%d");
  SAME(securebits, "%#x");
  SAME(caps.eff, "%#llx");
  SAME(caps.prm, "%#llx");
  SAME(caps.inh, "%#llx");
  SAME(bounding, "%#llx");
  SAME(ambient, "%#llx");
#undef SAME
  // And they are what was asked, not defaults that happen to agree.
  E2E_CHECK(after->nice == wants[i].nice, "thread %s: nice %d", n, after->nice);
  E2E_CHECK(after->slack == wants[i].slack_ns, "thread %s: slack %lu", n, after->slack);
  E2E_CHECK(after->ioprio == wants[i].ioprio, "thread %s: ioprio %#x", n, after->ioprio);
  E2E_CHECK(after->securebits == wants[i].securebits, "thread %s: securebits %#x", n,
            after->securebits);
}

static struct seen befores[NTHREADS], afters[NTHREADS];

// Each thread looks at its own settings: most of them exist per thread.
static void* worker(void* arg) {
  int i = (int)(intptr_t)arg;
  apply(&wants[i]);
  befores[i] = observe();
  __atomic_add_fetch(&applied, 1, __ATOMIC_SEQ_CST);
  while (!__atomic_load_n(&checked_go, __ATOMIC_SEQ_CST)) {
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  afters[i] = observe();
  return NULL;
}

int main(void) {
  e2e_setup();
  int fd = open("/proc/self/oom_score_adj", O_WRONLY);
  E2E_SYS(fd);
  E2E_SYS(write(fd, "500", 3));
  close(fd);
  E2E_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1));
  E2E_SYS(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0));
  pthread_t threads[NTHREADS];
  for (int i = 1; i < NTHREADS; ++i) e2e_thread(&threads[i], worker, (void*)(intptr_t)i);
  apply(&wants[0]);
  befores[0] = observe();
  while (__atomic_load_n(&applied, __ATOMIC_SEQ_CST) < NTHREADS - 1) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  e2e_ready();
  e2e_wait_go();
  __atomic_store_n(&checked_go, 1, __ATOMIC_SEQ_CST);
  afters[0] = observe();
  for (int i = 1; i < NTHREADS; ++i) pthread_join(threads[i], NULL);
  for (int i = 0; i < NTHREADS; ++i) check(i, &befores[i], &afters[i]);
  char adj[16] = {0};
  fd = open("/proc/self/oom_score_adj", O_RDONLY);
  E2E_CHECK(fd >= 0 && read(fd, adj, sizeof adj - 1) > 0 && atoi(adj) == 500, "oom_score_adj is %s",
            adj);
  close(fd);
  int subreaper = 0;
  prctl(PR_GET_CHILD_SUBREAPER, &subreaper);
  E2E_CHECK(subreaper == 1, "child subreaper %d", subreaper);
  int thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  E2E_CHECK(thp == 1, "THP disable %d", thp);
  return e2e_finish();
}
