// System V IPC objects of a dumped tree (programs/sysv_ipc.c): made again with their ids when
// they are gone at restore, reused when they are still there (ProgramTest covers that case),
// and an object of someone else in the way refused without being touched.
#include <gtest/gtest.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "test_process.hpp"

namespace e2e {
namespace {

struct Ids {
  int shm1 = -1, shm2 = -1, sem = -1, msq = -1;
};

// The ids the program printed before READY ("IDS shm1 shm2 sem msq").
Ids ids_of(const TestProcess& p) {
  Ids ids;
  std::istringstream in(p.out());
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string tag;
    if (words >> tag && tag == "IDS") words >> ids.shm1 >> ids.shm2 >> ids.sem >> ids.msq;
  }
  return ids;
}

void remove_all(const Ids& ids) {
  EXPECT_EQ(::shmctl(ids.shm1, IPC_RMID, nullptr), 0);
  EXPECT_EQ(::shmctl(ids.shm2, IPC_RMID, nullptr), 0);
  EXPECT_EQ(::semctl(ids.sem, 0, IPC_RMID), 0);
  EXPECT_EQ(::msgctl(ids.msq, IPC_RMID, nullptr), 0);
}

bool queue_exists(int id) {
  msqid_ds ds{};
  return ::msgctl(id, IPC_STAT, &ds) == 0;
}

class SysvIpcTest : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
};

TEST_F(SysvIpcTest, ObjectsRemovedAfterTheDumpComeBackWithTheirIds) {
  TestProcess p({program_path("sysv_ipc")});
  ASSERT_TRUE(p.wait_ready());
  Ids ids = ids_of(p);
  ASSERT_GE(ids.msq, 0) << p.output();
  ASSERT_TRUE(p.dump());
  remove_all(ids);
  ASSERT_FALSE(queue_exists(ids.msq));
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(queue_exists(ids.msq));
  EXPECT_TRUE(p.finish()) << p.output();
}

// The restored tree is saved again (its objects are found as its own although ckpt made them)
// and restored again with every object gone meanwhile.
TEST_F(SysvIpcTest, RestoredObjectsAreSavedByTheNextDump) {
  TestProcess p({program_path("sysv_ipc")});
  ASSERT_TRUE(p.wait_ready());
  Ids ids = ids_of(p);
  ASSERT_GE(ids.msq, 0) << p.output();
  ASSERT_TRUE(p.dump());
  remove_all(ids);
  ASSERT_TRUE(p.restore());
  ASSERT_TRUE(p.dump());
  remove_all(ids);
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish()) << p.output();
}

// Objects still there at restore are reused; restored seconds after they were last changed,
// they are still found as the tree's by its next dump (their change times are the restore's).
TEST_F(SysvIpcTest, ObjectsReusedLongAfterTheirLastChangeAreSavedByTheNextDump) {
  TestProcess p({program_path("sysv_ipc")});
  ASSERT_TRUE(p.wait_ready());
  Ids ids = ids_of(p);
  ASSERT_GE(ids.msq, 0) << p.output();
  ASSERT_TRUE(p.dump());
  sleep_for(2100ms);
  ASSERT_TRUE(p.restore());
  ASSERT_TRUE(p.dump());
  remove_all(ids);
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish()) << p.output();
}

// A queue another process made in the image's queue's place, and used: the restore refuses it,
// naming it, leaves it as it is, and removes nothing else; once it is gone the restore works.
TEST_F(SysvIpcTest, AnotherProcessesObjectInTheWayIsRefusedAndLeftAlone) {
  TestProcess p({program_path("sysv_ipc")});
  ASSERT_TRUE(p.wait_ready());
  Ids ids = ids_of(p);
  ASSERT_GE(ids.msq, 0) << p.output();
  ASSERT_TRUE(p.dump());
  ASSERT_EQ(::msgctl(ids.msq, IPC_RMID, nullptr), 0);
  { std::ofstream("/proc/sys/kernel/msg_next_id") << ids.msq; }
  int mine = ::msgget(IPC_PRIVATE, IPC_CREAT | 0600);
  ASSERT_EQ(mine, ids.msq);
  struct {
    long type;
    char text[8];
  } m{7, "mine"};
  ASSERT_EQ(::msgsnd(mine, &m, 4, 0), 0);

  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach"});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_NE(r.err.find("message queue " + std::to_string(ids.msq)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not in the image"), std::string::npos) << r.err;
  EXPECT_FALSE(alive(p.pid()));
  msqid_ds ds{};
  ASSERT_EQ(::msgctl(mine, IPC_STAT, &ds), 0) << "ckpt removed a queue it did not create";
  EXPECT_EQ(ds.msg_qnum, 1u);
  shmid_ds sds{};
  EXPECT_EQ(::shmctl(ids.shm1, IPC_STAT, &sds), 0) << "ckpt removed the segment it reused";

  ASSERT_EQ(::msgctl(mine, IPC_RMID, nullptr), 0);
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish()) << p.output();
}

// /bin/sleep as a child with PID `pid` (clone3 set_tid), or -1.
pid_t sleep_as(pid_t pid) {
  clone_args args{};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&pid);
  args.set_tid_size = 1;
  long child = ::syscall(SYS_clone3, &args, sizeof args);
  if (child == 0) {
    // Only its stdio: a file the test runner left open in the test (ctest's log) would be
    // dumped with it and, grown meanwhile, refuse the restore.
    ::close_range(3, ~0U, 0);
    ::execl("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return static_cast<pid_t>(child);
}

// A semaphore set and a message queue last changed by a process that ended, whose PID a process
// of the tree got later, are not the tree's (the kernel keeps the PID of the last process to
// change them): left out of the image, they do not stop its restore after other processes used
// them since.
TEST_F(SysvIpcTest, ObjectsLastChangedByAnEndedProcessWhosePidCameBackAreNotTheTrees) {
  int sem = ::semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
  int msq = ::msgget(IPC_PRIVATE, IPC_CREAT | 0600);
  ASSERT_GE(sem, 0);
  ASSERT_GE(msq, 0);
  struct {
    long type;
    char text[8];
  } m{7, "old"};
  sembuf up{0, 1, 0};
  pid_t old = ::fork();
  ASSERT_GE(old, 0);
  if (old == 0) ::_exit(::semop(sem, &up, 1) == 0 && ::msgsnd(msq, &m, 3, 0) == 0 ? 0 : 1);
  auto st = wait_child(old, 5s);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
  ASSERT_EQ(::semctl(sem, 0, GETPID), old);
  sleep_for(2100ms);  // its changes are then clearly older than the process that gets its PID
  pid_t reused = sleep_as(old);
  ASSERT_EQ(reused, old) << "clone3 with set_tid " << old << ": " << strerror(errno);
  TempDir dir;
  auto dumped = run_ckpt({"dump", "-t", std::to_string(reused), "-D", (dir / "store").string()});
  ASSERT_EQ(dumped.exit_code(), 0) << dumped.describe();
  wait_child(reused, 5s);
  ASSERT_EQ(::semop(sem, &up, 1), 0);  // used by a process not in the image since
  auto restored = run_ckpt({"restore", "-D", (dir / "store").string(), "--detach"});
  EXPECT_EQ(restored.exit_code(), 0) << restored.describe();
  EXPECT_TRUE(alive(reused));
  ::kill(reused, SIGKILL);
  wait_child(reused, 5s);
  EXPECT_EQ(::semctl(sem, 0, GETVAL), 2) << "the set was changed";
  EXPECT_EQ(::semctl(sem, 0, IPC_RMID), 0);
  EXPECT_EQ(::msgctl(msq, IPC_RMID, nullptr), 0);
}

}  // namespace
}  // namespace e2e
