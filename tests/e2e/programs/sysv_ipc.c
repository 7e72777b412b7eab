// System V IPC used by a parent and its child: a keyed shared memory segment attached by both
// (the child a second time, read-only, and one attachment split by mprotect), a private segment,
// a semaphore set and a message queue with messages of several types waiting. After the restore
// each object must have its id, key, mode and contents; both processes must still share the
// segment (a write of one is seen by the other) and the semaphores must still work. The objects
// are removed at the end. Prints "IDS shm1 shm2 sem msg" before READY for tests that look.
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define SEG1 (3 * 4096 + 100)
#define SEG2 (64 * 4096)

union semun {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

struct msgbuf_ {
  long type;
  char text[64];
};

static int shm1, shm2, sem, msq;
static key_t key1, key_sem;
static char *map1, *map1_ro, *map2;
static pid_t parent_pid;

static void make_objects(void) {
  key1 = 0x5e000000 | (getpid() & 0xffffff);
  key_sem = 0x5f000000 | (getpid() & 0xffffff);
  E2E_SYS(shm1 = shmget(key1, SEG1, IPC_CREAT | IPC_EXCL | 0640));
  E2E_SYS(shm2 = shmget(IPC_PRIVATE, SEG2, IPC_CREAT | 0600));
  E2E_SYS(sem = semget(key_sem, 3, IPC_CREAT | IPC_EXCL | 0660));
  E2E_SYS(msq = msgget(IPC_PRIVATE, IPC_CREAT | 0620));
  map1 = shmat(shm1, NULL, 0);
  map2 = shmat(shm2, NULL, 0);
  if (map1 == (void*)-1 || map2 == (void*)-1) {
    e2e_say("FAIL shmat: %s", strerror(errno));
    exit(1);
  }
  strcpy(map1 + 4096, "segment one, page two");
  strcpy(map1 + SEG1 - 10, "tail");
  for (int i = 0; i < SEG2; i += 4096 * 7) map2[i] = (char)(i / 4096 + 1);
  // The last page of the first attachment read-only: one attachment, two mappings.
  E2E_SYS(mprotect(map1 + 3 * 4096, 4096, PROT_READ));
  unsigned short vals[3] = {3, 0, 7};
  union semun arg = {.array = vals};
  E2E_SYS(semctl(sem, 0, SETALL, arg));
  struct msgbuf_ m;
  const char* texts[] = {"first", "second, longer message", ""};
  long types[] = {2, 5, 2};
  for (int i = 0; i < 3; ++i) {
    m.type = types[i];
    strcpy(m.text, texts[i]);
    E2E_SYS(msgsnd(msq, &m, strlen(texts[i]), 0));
  }
}

static void check_perm(struct ipc_perm* p, key_t key, unsigned mode, const char* what) {
  E2E_CHECK(p->__key == key, "%s: key %#x, want %#x", what, (unsigned)p->__key, (unsigned)key);
  E2E_CHECK((p->mode & 0777) == mode, "%s: mode %o, want %o", what, p->mode & 0777, mode);
  E2E_CHECK(p->uid == getuid(), "%s: owner %d", what, (int)p->uid);
}

static void check_shm(void) {
  struct shmid_ds ds;
  E2E_SYS(shmctl(shm1, IPC_STAT, &ds));
  check_perm(&ds.shm_perm, key1, 0640, "segment 1");
  E2E_CHECK(ds.shm_segsz == SEG1, "segment 1: size %zu", (size_t)ds.shm_segsz);
  // Two attachments in each process, the first split in two mappings by mprotect, each of
  // which the kernel counts.
  E2E_CHECK(ds.shm_nattch == 6, "segment 1: attached %lu times, want 6",
            (unsigned long)ds.shm_nattch);
  E2E_CHECK(strcmp(map1 + 4096, "segment one, page two") == 0, "segment 1 holds '%s'", map1 + 4096);
  E2E_CHECK(strcmp(map1 + SEG1 - 10, "tail") == 0, "segment 1 tail '%s'", map1 + SEG1 - 10);
  E2E_CHECK(map1[0] == 'c', "segment 1: the child's write before the dump is '%c'", map1[0]);
  E2E_SYS(shmctl(shm2, IPC_STAT, &ds));
  check_perm(&ds.shm_perm, IPC_PRIVATE, 0600, "segment 2");
  int bad = 0;
  for (int i = 0; i < SEG2; i += 4096)
    bad += map2[i] != (i % (4096 * 7) == 0 ? (char)(i / 4096 + 1) : 0);
  E2E_CHECK(bad == 0, "segment 2: %d pages differ", bad);
}

static void check_sem_and_msg(void) {
  unsigned short vals[3] = {0};
  union semun arg = {.array = vals};
  E2E_SYS(semctl(sem, 0, GETALL, arg));
  // The child took one from semaphore 0 and added two to semaphore 1 before the dump.
  E2E_CHECK(vals[0] == 2 && vals[1] == 2 && vals[2] == 7, "semaphores %d %d %d, want 2 2 7",
            vals[0], vals[1], vals[2]);
  struct semid_ds sds;
  arg.buf = &sds;
  E2E_SYS(semctl(sem, 0, IPC_STAT, arg));
  check_perm(&sds.sem_perm, key_sem, 0660, "semaphores");
  struct msqid_ds qds;
  E2E_SYS(msgctl(msq, IPC_STAT, &qds));
  check_perm(&qds.msg_perm, IPC_PRIVATE, 0620, "queue");
  E2E_CHECK(qds.msg_qnum == 3, "queue holds %lu messages", (unsigned long)qds.msg_qnum);
  struct msgbuf_ m;
  memset(&m, 0, sizeof m);
  // By type first: the type-5 message, then the two of type 2 in order.
  ssize_t n = msgrcv(msq, &m, sizeof m.text, 5, IPC_NOWAIT);
  E2E_CHECK(n == 22 && strcmp(m.text, "second, longer message") == 0, "type 5: %zd '%s'", n,
            m.text);
  memset(&m, 0, sizeof m);
  n = msgrcv(msq, &m, sizeof m.text, 0, IPC_NOWAIT);
  E2E_CHECK(n == 5 && m.type == 2 && strcmp(m.text, "first") == 0, "first: %zd '%s'", n, m.text);
  n = msgrcv(msq, &m, sizeof m.text, 0, IPC_NOWAIT);
  E2E_CHECK(n == 0 && m.type == 2, "third: %zd bytes, type %ld", n, m.type);
}

static void child(int ready) {
  char* ro = shmat(shm1, NULL, SHM_RDONLY);
  if (ro == (void*)-1) _exit(2);
  map1[0] = 'c';
  struct sembuf ops[2] = {{0, -1, 0}, {1, 2, 0}};
  if (semop(sem, ops, 2) < 0) _exit(3);
  (void)!write(ready, "r", 1);
  // Blocked here at the dump: the parent lets it go after the restore.
  struct sembuf wait_op = {2, -8, 0};
  if (semop(sem, &wait_op, 1) < 0) _exit(4);
  int bad = ro[4096] != 's' || map1[SEG1 - 1] != 0;
  if (getppid() != parent_pid) bad = 1;
  map1[1] = 'C';  // the parent looks for it: the segment is still shared
  _exit(bad ? 5 : 0);
}

int main(void) {
  e2e_setup();
  parent_pid = getpid();
  make_objects();
  int p[2];
  E2E_SYS(pipe(p));
  pid_t kid = fork();
  if (kid == 0) child(p[1]);
  char c;
  E2E_CHECK(read(p[0], &c, 1) == 1, "child did not get ready");
  map1_ro = shmat(shm1, NULL, SHM_RDONLY);  // the parent's second attachment
  e2e_say("IDS %d %d %d %d", shm1, shm2, sem, msq);
  e2e_ready();
  e2e_wait_go();
  check_shm();
  check_sem_and_msg();
  E2E_CHECK(map1_ro != (void*)-1 && map1_ro[4096] == 's', "read-only attachment");
  struct sembuf post = {2, 1, 0};  // 7 + 1: the child's wait for 8 can go on
  E2E_SYS(semop(sem, &post, 1));
  int status = 0;
  E2E_SYS(waitpid(kid, &status, 0));
  E2E_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
  E2E_CHECK(map1[1] == 'C', "the child's write after the restore is '%c'", map1[1]);
  shmctl(shm1, IPC_RMID, NULL);
  shmctl(shm2, IPC_RMID, NULL);
  semctl(sem, 0, IPC_RMID);
  msgctl(msq, IPC_RMID, NULL);
  return e2e_finish();
}
