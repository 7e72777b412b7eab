#pragma once
// System V IPC objects used by the dumped tree: shared memory segments, semaphore sets and
// message queues (docs/engine.md, "System V IPC"). They live in the IPC namespace, not in a
// process, so the dump saves only those the tree uses:
//   - a segment that a process of the tree has attached (a "/SYSVKKKKKKKK" mapping, whose inode
//     number is the segment's id);
//   - a semaphore set in which a process of the tree was the last to change some semaphore
//     (semop, SETVAL, SETALL: its sempid);
//   - a message queue whose last sender or receiver (lspid, lrpid) is a process of the tree.
// Each comes back with its id (set through /proc/sys/kernel/{shm,sem,msg}_next_id), key, owner,
// mode and contents. An object that still exists at restore with the same id and key (the tree
// was killed, the objects stay) is reused when no process outside the image has used it since;
// anything else in the way is refused, and nothing ckpt did not create is ever removed.
#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "image/schema/records.hpp"
#include "image/store.hpp"
#include "proc/maps.hpp"
#include "resources/context.hpp"

namespace ckpt::sysv_ipc {

struct IpcObject {  // what every kind has: ipc_perm
  int32_t id = 0;
  int32_t key = 0;  // IPC_PRIVATE (0) for private objects and segments marked for removal
  uint32_t uid = 0, gid = 0, mode = 0;  // owner and the 9 permission bits
  template <class V>
  void visit(V& v) {
    v("id", id), v("key", key), v("uid", uid), v("gid", gid), v("mode", mode);
  }
};

struct ShmSegment {  // contents in the section "sysv.shm.ID", its data ranges only
  IpcObject ipc;
  uint64_t size = 0;
  std::vector<schema::Range> data;
  bool removed = false;  // IPC_RMID'd while attached (SHM_DEST): removed again after restore
  bool locked = false;   // SHM_LOCK: its pages may not be swapped out
  template <class V>
  void visit(V& v) {
    v("ipc", ipc), v("size", size), v("data", data), v("removed", removed), v("locked", locked);
  }
};

struct SemSet {
  IpcObject ipc;
  std::vector<int32_t> values;  // semval of each semaphore
  std::vector<int32_t> pids;    // sempid of each: the process that changed it last
  template <class V>
  void visit(V& v) {
    v("ipc", ipc), v("values", values), v("pids", pids);
  }
};

struct Message {
  int64_t type = 0;
  schema::Bytes text;
  template <class V>
  void visit(V& v) {
    v("type", type), v("text", text);
  }
};

struct MsgQueue {
  IpcObject ipc;
  uint64_t qbytes = 0;  // msg_qbytes: the most bytes the queue holds
  int32_t lspid = 0, lrpid = 0;
  std::vector<Message> messages;  // oldest first
  template <class V>
  void visit(V& v) {
    v("ipc", ipc), v("qbytes", qbytes), v("lspid", lspid), v("lrpid", lrpid);
    v("messages", messages);
  }
};

struct SysvIpcRecord {
  std::vector<ShmSegment> shm;
  std::vector<SemSet> sem;
  std::vector<MsgQueue> msg;
  template <class V>
  void visit(V& v) {
    v("shm", shm), v("sem", sem), v("msg", msg);
  }
  bool empty() const { return shm.empty() && sem.empty() && msg.empty(); }
};

// ---- dump ---------------------------------------------------------------------------------

// Whether a mapping is an attachment of a System V shared memory segment.
bool is_attachment(const proc::MapEntry& m);

// After every process is read (their maps are known): saves the objects the tree uses into
// image.sysv_ipc, segment contents into sections of their own.
Status dump(const std::vector<DumpContext*>& procs);

// ---- restore ------------------------------------------------------------------------------

// The image's record (empty when the image has none).
Result<SysvIpcRecord> record_of(const schema::ImageRoot& image);

// The objects of an image, made again (or reused) in the restorer before any puppet exists.
// Objects ckpt created are removed again unless finish() is reached.
class Recreated {
 public:
  Recreated() = default;
  Recreated(Recreated&& o) noexcept;
  Recreated& operator=(Recreated&&) = delete;
  Recreated(const Recreated&) = delete;
  ~Recreated();

  // Every process is built: segments that were marked for removal are marked again, and the
  // objects are left to the restored processes.
  Status finish();
  // finish() was done by another process (a fork that built the tree): nothing left to undo.
  void release() {
    created.clear();
    to_remove.clear();
  }

  struct Created {
    int kind;  // 0 shm, 1 sem, 2 msg
    int id;
  };
  std::vector<Created> created;
  std::vector<int> to_remove;  // segments to IPC_RMID once attached again
};
Result<Recreated> recreate(const schema::ImageRoot& image);

// In a puppet (which has its final PID): semaphore values and messages are set by the process
// that had last set them, so that sempid and lspid name a process of the tree again (and the
// next dump sees the objects as the tree's).
Status restore_in_puppet(const schema::ImageRoot& image, pid_t pid);

// In memory::restore: attaches the segment of `v` at its address (an attachment split by
// mprotect is several mappings; the first, at offset 0, attaches the whole segment). The
// segment's first attachment in the image fills it with its contents.
Status attach(RestoreContext& ctx, const schema::Vma& v);

}  // namespace ckpt::sysv_ipc
