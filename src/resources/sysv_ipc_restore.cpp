// System V IPC at restore: the objects made again with their ids, or reused (sysv_ipc.hpp).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <set>

#include "common/fs_util.hpp"
#include "common/log.hpp"
#include "proc/proc_file.hpp"
#include "resources/shared_memory.hpp"
#include "resources/sysv_ipc.hpp"

namespace ckpt::sysv_ipc {
namespace {

constexpr uint64_t kPage = 4096;
enum Kind { kShm = 0, kSem = 1, kMsg = 2 };
constexpr const char* kKindNames[] = {"System V shared memory", "System V semaphore set",
                                      "System V message queue"};
constexpr const char* kNextId[] = {"/proc/sys/kernel/shm_next_id", "/proc/sys/kernel/sem_next_id",
                                   "/proc/sys/kernel/msg_next_id"};

union SemArg {
  int val;
  semid_ds* buf;
  unsigned short* array;
};

std::string name_of(int kind, const IpcObject& o) {
  if (o.key == IPC_PRIVATE) return fmt::format("{} {}", kKindNames[kind], o.id);
  return fmt::format("{} {} (key {:#x})", kKindNames[kind], o.id, static_cast<uint32_t>(o.key));
}

Status write_next_id(int kind, int id) {
  Status st = proc::write_proc_text(kNextId[kind], std::to_string(id));
  if (!st.ok())
    return make_error(st.error().message + " (needs CAP_CHECKPOINT_RESTORE)", st.error().errnum);
  return {};
}

void remove_object(int kind, int id) {
  if (kind == kShm) ::shmctl(id, IPC_RMID, nullptr);
  if (kind == kSem) ::semctl(id, 0, IPC_RMID);
  if (kind == kMsg) ::msgctl(id, IPC_RMID, nullptr);
}

// Restores of other ckpt processes write *_next_id too: one at a time on this machine, so that
// none takes the id another has just asked for. Held for one write and one creation.
class NextIdLock {
 public:
  NextIdLock() {
    fd_.reset(::open("/run/lock/ckpt-sysv-ipc.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd_) fd_.reset(::open("/tmp/ckpt-sysv-ipc.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    // Without a lock file the creation is still checked below: it only loses the serialization.
    while (fd_ && ::flock(fd_.get(), LOCK_EX) < 0 && errno == EINTR) {
    }
  }

 private:
  ScopedFd fd_;
};

// Creates the object with the image's id: the kernel gives the next object the id written to
// *_next_id. A program creating one at the same moment takes the id: a few attempts, then the
// creation fails naming the id.
Result<int> create_with_id(int kind, const IpcObject& o, const std::function<int()>& make,
                           Recreated& out) {
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    int got, err;
    {
      NextIdLock lock;
      CKPT_TRY(write_next_id(kind, o.id));
      got = make();
      err = errno;
    }
    if (got < 0) {
      (void)write_next_id(kind, -1);
      return sys_error(err, fmt::format("create {}", name_of(kind, o)));
    }
    if (got == o.id) {
      out.created.push_back({kind, got});
      return got;
    }
    remove_object(kind, got);
    if (attempt == kAttempts)
      return errorf("create {}: the kernel gave it id {} (another process took the id meanwhile?)",
                    name_of(kind, o), got);
    log::info("restore", "create {}: got id {}; again", name_of(kind, o), got);
  }
}

// An object in the way with the image's key but another id cannot be the image's.
Status check_key_free(int kind, const IpcObject& o) {
  if (o.key == IPC_PRIVATE) return {};
  int id = kind == kShm   ? ::shmget(o.key, 0, 0)
           : kind == kSem ? ::semget(o.key, 0, 0)
                          : ::msgget(o.key, 0);
  if (id < 0) return {};
  return errorf("restore {}: the key is used by another object (id {})", name_of(kind, o), id);
}

Status check_same_key(int kind, const IpcObject& o, key_t key) {
  if (key == o.key) return {};
  return errorf("restore {}: id {} is taken by another object (key {:#x})", name_of(kind, o), o.id,
                static_cast<uint32_t>(key));
}

Status check_user(int kind, const IpcObject& o, pid_t pid, const std::set<pid_t>& pids,
                  std::string_view what) {
  if (pid == 0 || pids.count(pid)) return {};
  return errorf(
      "restore {}: it still exists and pid {}, not in the image, {} it since the dump; remove it "
      "(ipcrm) to restore the image's",
      name_of(kind, o), pid, what);
}

template <class Ds>
void set_perm(Ds& ds, const IpcObject& o) {
  ds.uid = o.uid;
  ds.gid = o.gid;
  ds.mode = static_cast<decltype(ds.mode)>((ds.mode & ~0777u) | o.mode);
}

// ---- shared memory --------------------------------------------------------------------------

// An existing segment with the image's id is reused when nobody has it attached and nobody
// outside the image attached it last (the dumped tree was killed, the segment stayed).
Result<bool> reusable_segment(const ShmSegment& s, const std::set<pid_t>& pids) {
  shmid_ds ds{};
  if (::shmctl(s.ipc.id, IPC_STAT, &ds) < 0) {
    if (errno == EINVAL || errno == EIDRM) return false;
    return sys_error(fmt::format("shmctl(IPC_STAT) of {}", name_of(kShm, s.ipc)));
  }
  CKPT_TRY(check_same_key(kShm, s.ipc, ds.shm_perm.__key));
  if (ds.shm_segsz != s.size)
    return errorf("restore {}: it exists with {} bytes, the image's has {}", name_of(kShm, s.ipc),
                  ds.shm_segsz, s.size);
  if (ds.shm_nattch != 0)
    return errorf("restore {}: it exists and is attached {} times (last by pid {})",
                  name_of(kShm, s.ipc), ds.shm_nattch, ds.shm_lpid);
  CKPT_TRY(check_user(kShm, s.ipc, ds.shm_lpid, pids, "attached"));
  return true;
}

// Its contents are written once the first process has attached it again (fill_attached()).
Status make_segment(const ShmSegment& s, bool reused, Recreated& out) {
  if (!reused) {
    auto make = [&] {
      return ::shmget(s.ipc.key, s.size, IPC_CREAT | IPC_EXCL | static_cast<int>(s.ipc.mode));
    };
    CKPT_TRY(create_with_id(kShm, s.ipc, make, out));
  }
  shmid_ds ds{};
  if (::shmctl(s.ipc.id, IPC_STAT, &ds) < 0)
    return sys_error(fmt::format("shmctl(IPC_STAT) of {}", name_of(kShm, s.ipc)));
  set_perm(ds.shm_perm, s.ipc);
  if (::shmctl(s.ipc.id, IPC_SET, &ds) < 0)
    return sys_error(fmt::format("shmctl(IPC_SET) owner and mode of {}", name_of(kShm, s.ipc)));
  if (s.locked && ::shmctl(s.ipc.id, SHM_LOCK, nullptr) < 0)
    return sys_error(fmt::format("shmctl(SHM_LOCK) of {}", name_of(kShm, s.ipc)));
  if (s.removed) out.to_remove.push_back(s.ipc.id);
  return {};
}

// ---- semaphores -----------------------------------------------------------------------------

Result<bool> reusable_sem_set(const SemSet& s, const std::set<pid_t>& pids) {
  semid_ds ds{};
  SemArg arg{};
  arg.buf = &ds;
  if (::semctl(s.ipc.id, 0, IPC_STAT, arg) < 0) {
    if (errno == EINVAL || errno == EIDRM) return false;
    return sys_error(fmt::format("semctl(IPC_STAT) of {}", name_of(kSem, s.ipc)));
  }
  CKPT_TRY(check_same_key(kSem, s.ipc, ds.sem_perm.__key));
  if (s.values.size() != s.pids.size() || s.values.empty())
    return errorf("restore {}: the image's record is malformed", name_of(kSem, s.ipc));
  if (ds.sem_nsems != s.values.size())
    return errorf("restore {}: it exists with {} semaphores, the image's has {}",
                  name_of(kSem, s.ipc), ds.sem_nsems, s.values.size());
  for (size_t i = 0; i < s.values.size(); ++i) {
    int n = static_cast<int>(i);
    if (::semctl(s.ipc.id, n, GETNCNT) > 0 || ::semctl(s.ipc.id, n, GETZCNT) > 0)
      return errorf("restore {}: it exists and processes wait on its semaphore {}",
                    name_of(kSem, s.ipc), i);
    CKPT_TRY(check_user(kSem, s.ipc, ::semctl(s.ipc.id, n, GETPID), pids, "changed"));
  }
  return true;
}

Status make_sem_set(const SemSet& s, bool reused, Recreated& out) {
  if (!reused) {
    auto make = [&] {
      return ::semget(s.ipc.key, static_cast<int>(s.values.size()),
                      IPC_CREAT | IPC_EXCL | static_cast<int>(s.ipc.mode));
    };
    CKPT_TRY(create_with_id(kSem, s.ipc, make, out));
  }
  semid_ds ds{};
  SemArg arg{};
  arg.buf = &ds;
  if (::semctl(s.ipc.id, 0, IPC_STAT, arg) < 0)
    return sys_error(fmt::format("semctl(IPC_STAT) of {}", name_of(kSem, s.ipc)));
  set_perm(ds.sem_perm, s.ipc);
  if (::semctl(s.ipc.id, 0, IPC_SET, arg) < 0)
    return sys_error(fmt::format("semctl(IPC_SET) owner and mode of {}", name_of(kSem, s.ipc)));
  return {};  // the values are set by the puppets (restore_in_puppet)
}

// ---- message queues -------------------------------------------------------------------------

Result<bool> reusable_queue(const MsgQueue& q, const std::set<pid_t>& pids) {
  msqid_ds ds{};
  if (::msgctl(q.ipc.id, IPC_STAT, &ds) < 0) {
    if (errno == EINVAL || errno == EIDRM) return false;
    return sys_error(fmt::format("msgctl(IPC_STAT) of {}", name_of(kMsg, q.ipc)));
  }
  CKPT_TRY(check_same_key(kMsg, q.ipc, ds.msg_perm.__key));
  CKPT_TRY(check_user(kMsg, q.ipc, ds.msg_lspid, pids, "sent to"));
  CKPT_TRY(check_user(kMsg, q.ipc, ds.msg_lrpid, pids, "received from"));
  return true;
}

// What a reused queue holds now was sent by the tree after the dump: it goes.
Status drain(const MsgQueue& q) {
  std::vector<unsigned char> buf(sizeof(long) + 65536);
  for (;;) {
    ssize_t n =
        ::msgrcv(q.ipc.id, buf.data(), buf.size() - sizeof(long), 0, IPC_NOWAIT | MSG_NOERROR);
    if (n >= 0) continue;
    if (errno == ENOMSG) return {};
    return sys_error(fmt::format("empty {}", name_of(kMsg, q.ipc)));
  }
}

Status make_queue(const MsgQueue& q, bool reused, Recreated& out) {
  if (reused) {
    CKPT_TRY(drain(q));
  } else {
    auto make = [&] {
      return ::msgget(q.ipc.key, IPC_CREAT | IPC_EXCL | static_cast<int>(q.ipc.mode));
    };
    CKPT_TRY(create_with_id(kMsg, q.ipc, make, out));
  }
  msqid_ds ds{};
  if (::msgctl(q.ipc.id, IPC_STAT, &ds) < 0)
    return sys_error(fmt::format("msgctl(IPC_STAT) of {}", name_of(kMsg, q.ipc)));
  set_perm(ds.msg_perm, q.ipc);
  ds.msg_qbytes = q.qbytes;
  if (::msgctl(q.ipc.id, IPC_SET, &ds) < 0) {
    if (errno == EPERM)
      return errorf(
          "restore {}: its size limit of {} bytes is above this system's msgmnb, which needs "
          "CAP_SYS_RESOURCE",
          name_of(kMsg, q.ipc), q.qbytes);
    return sys_error(fmt::format("msgctl(IPC_SET) of {}", name_of(kMsg, q.ipc)));
  }
  return {};  // the messages are sent by a puppet (restore_in_puppet)
}

// ---- in the puppets ---------------------------------------------------------------------------

// The processes that will run again (a zombie's puppet does nothing).
std::set<pid_t> live_pids(const schema::ImageRoot& image) {
  std::set<pid_t> out;
  for (auto& p : image.processes)
    if (!p.zombie) out.insert(p.pid);
  return out;
}

pid_t first_live(std::initializer_list<pid_t> candidates, const std::set<pid_t>& live,
                 pid_t fallback) {
  for (pid_t p : candidates)
    if (live.count(p)) return p;
  return fallback;
}

Status set_semaphores(const SemSet& s, pid_t me, const std::set<pid_t>& live, pid_t root) {
  pid_t any = root;
  for (pid_t p : s.pids)
    if (live.count(p)) any = p;
  for (size_t i = 0; i < s.values.size(); ++i) {
    int n = static_cast<int>(i);
    if (first_live({s.pids[i]}, live, any) != me) continue;
    // Even where the value and PID are already right (a set reused): the change time comes
    // after this process started, or the next dump would take the PID for a stale one.
    SemArg arg{};
    arg.val = s.values[i];
    if (::semctl(s.ipc.id, n, SETVAL, arg) < 0)
      return sys_error(fmt::format("semctl(SETVAL, {}) semaphore {} of {}", s.values[i], i,
                                   name_of(kSem, s.ipc)));
  }
  return {};
}

Status send_messages(const MsgQueue& q) {
  std::vector<unsigned char> buf;
  auto send = [&](int64_t type, const schema::Bytes& text) -> Status {
    buf.resize(sizeof(long) + text.size());
    long t = static_cast<long>(type);
    std::memcpy(buf.data(), &t, sizeof t);
    if (!text.empty()) std::memcpy(buf.data() + sizeof(long), text.data(), text.size());
    if (::msgsnd(q.ipc.id, buf.data(), text.size(), IPC_NOWAIT) < 0)
      return sys_error(fmt::format("msgsnd to {}", name_of(kMsg, q.ipc)));
    return {};
  };
  for (auto& m : q.messages) {
    if (m.type <= 0)
      return errorf("restore {}: a message of type {}", name_of(kMsg, q.ipc), m.type);
    CKPT_TRY(send(m.type, m.text));
  }
  if (!q.messages.empty()) return {};
  // An empty queue: one message through it leaves this process as its last sender and receiver,
  // as the tree's process was, so that the next dump finds the queue as the tree's.
  CKPT_TRY(send(1, {}));
  if (::msgrcv(q.ipc.id, buf.data(), 0, 0, IPC_NOWAIT | MSG_NOERROR) < 0)
    return sys_error(fmt::format("msgrcv from {}", name_of(kMsg, q.ipc)));
  return {};
}

}  // namespace

Recreated::Recreated(Recreated&& o) noexcept
    : created(std::move(o.created)), to_remove(std::move(o.to_remove)) {
  o.created.clear();
  o.to_remove.clear();
}

Recreated::~Recreated() {
  for (auto it = created.rbegin(); it != created.rend(); ++it) remove_object(it->kind, it->id);
}

Status Recreated::finish() {
  created.clear();
  for (int id : to_remove)
    if (::shmctl(id, IPC_RMID, nullptr) < 0)
      return sys_error(fmt::format("shmctl(IPC_RMID) of System V shared memory {}", id));
  to_remove.clear();
  return {};
}

Result<Recreated> recreate(const schema::ImageRoot& image) {
  CKPT_TRY_ASSIGN(SysvIpcRecord rec, record_of(image));
  Recreated out;
  std::set<pid_t> pids;
  for (auto& p : image.processes) pids.insert(p.pid);
  // Every object is checked before any is changed: a refusal leaves them all as they were.
  std::vector<bool> shm, sem, msg;
  for (auto& s : rec.shm) {
    CKPT_TRY_ASSIGN(bool reused, reusable_segment(s, pids));
    if (!reused) CKPT_TRY(check_key_free(kShm, s.ipc));
    shm.push_back(reused);
  }
  for (auto& s : rec.sem) {
    CKPT_TRY_ASSIGN(bool reused, reusable_sem_set(s, pids));
    if (!reused) CKPT_TRY(check_key_free(kSem, s.ipc));
    sem.push_back(reused);
  }
  for (auto& q : rec.msg) {
    CKPT_TRY_ASSIGN(bool reused, reusable_queue(q, pids));
    if (!reused) CKPT_TRY(check_key_free(kMsg, q.ipc));
    msg.push_back(reused);
  }
  for (size_t i = 0; i < rec.shm.size(); ++i) CKPT_TRY(make_segment(rec.shm[i], shm[i], out));
  for (size_t i = 0; i < rec.sem.size(); ++i) CKPT_TRY(make_sem_set(rec.sem[i], sem[i], out));
  for (size_t i = 0; i < rec.msg.size(); ++i) CKPT_TRY(make_queue(rec.msg[i], msg[i], out));
  if (!rec.empty())
    log::info("restore", "System V IPC: {} segments, {} semaphore sets, {} message queues",
              rec.shm.size(), rec.sem.size(), rec.msg.size());
  return out;
}

Status restore_in_puppet(const schema::ImageRoot& image, pid_t pid) {
  if (!image.sysv_ipc) return {};
  CKPT_TRY_ASSIGN(SysvIpcRecord rec, record_of(image));
  std::set<pid_t> live = live_pids(image);
  pid_t root = image.processes.front().pid;
  for (auto& s : rec.sem) CKPT_TRY(set_semaphores(s, pid, live, root));
  for (auto& q : rec.msg)
    if (first_live({q.lspid, q.lrpid}, live, root) == pid) CKPT_TRY(send_messages(q));
  return {};
}

namespace {

// Whether `v` of this process is where the segment is first attached in the image's order (the
// order processes are built in): its contents are written there.
bool first_attachment(const RestoreContext& ctx, const schema::Vma& v) {
  for (auto& p : ctx.image->processes) {
    if (p.zombie) continue;
    for (auto& m : p.memory.vmas)
      if (m.sysv_shm == v.sysv_shm && m.offset == 0) return p.pid == ctx.pid && m.start == v.start;
  }
  return false;
}

// Written through the attachment's file in /proc (the segment's tmpfs file), so that the
// restorer never attaches it: the last to attach is a process of the tree, as at the dump.
Status fill_attached(RestoreContext& ctx, const schema::Vma& v, const ShmSegment& s) {
  uint64_t end = v.start + ((s.size + kPage - 1) & ~(kPage - 1));
  std::string link = fmt::format("/proc/{}/map_files/{:x}-{:x}", ctx.pid, v.start, end);
  CKPT_TRY_ASSIGN(ScopedFd fd, open_file(link, O_RDWR));
  // A reused segment holds what the processes wrote after the dump: back to the image's.
  if (::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                  static_cast<off_t>(s.size)) < 0)
    return sys_error(fmt::format("clear {}", name_of(kShm, s.ipc)));
  return shared_memory::fill_from_section(
      *ctx.store, ctx.generation, fmt::format("sysv.shm.{}", s.ipc.id), s.data, s.size, fd.get());
}

}  // namespace

Status attach(RestoreContext& ctx, const schema::Vma& v) {
  auto& rs = *ctx.main_remote;
  uint64_t len = v.end - v.start;
  // Only a segment of the image, which the restore made or checked: never any other.
  CKPT_TRY_ASSIGN(SysvIpcRecord rec, record_of(*ctx.image));
  const ShmSegment* s = nullptr;
  for (auto& seg : rec.shm)
    if (seg.ipc.id == *v.sysv_shm) s = &seg;
  if (!s)
    return errorf("restore pid {}: System V shared memory {} at {:#x} is not in the image", ctx.pid,
                  *v.sysv_shm, v.start);
  if (v.offset == 0) {
    uint64_t flags = (v.has_flag("mw") ? 0 : SHM_RDONLY) | (v.has_flag("me") ? SHM_EXEC : 0);
    CKPT_TRY_ASSIGN(long got, rs.call("shmat", SYS_shmat,
                                      {static_cast<uint64_t>(*v.sysv_shm), v.start, flags}));
    if (static_cast<uint64_t>(got) != v.start)
      return errorf("restore pid {}: System V shared memory {} attached at {:#x}, not {:#x}",
                    ctx.pid, *v.sysv_shm, got, v.start);
    if (first_attachment(ctx, v)) CKPT_TRY(fill_attached(ctx, v, *s));
  }
  // One attachment split by mprotect: each part gets its own protection.
  CKPT_TRY(rs.call("mprotect", SYS_mprotect, {v.start, len, static_cast<uint64_t>(v.prot)}));
  return {};
}

}  // namespace ckpt::sysv_ipc
