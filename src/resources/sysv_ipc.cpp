// System V IPC at dump: which objects the tree uses, and what they hold (sysv_ipc.hpp).
#include "resources/sysv_ipc.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>

#include "common/fs_util.hpp"
#include "common/log.hpp"
#include "proc/proc_file.hpp"
#include "proc/stat.hpp"
#include "resources/shared_memory.hpp"

namespace ckpt::sysv_ipc {
namespace {

constexpr uint64_t kPage = 4096;
constexpr std::string_view kSysvPrefix = "/SYSV";

union SemArg {  // the caller defines semctl's fourth argument (semctl(2))
  int val;
  semid_ds* buf;
  unsigned short* array;
};

std::string section_name(int id) {
  return fmt::format("sysv.shm.{}", id);
}

IpcObject object_of(int id, const ipc_perm& p) {
  return IpcObject{id, static_cast<int32_t>(p.__key), p.uid, p.gid, p.mode & 0777u};
}

// The ids listed in /proc/sysvipc/NAME (second column), in this process's IPC namespace. Read
// without an ifstream: the first one of a process took 0.4 ms here (its locale), in the freeze.
Result<std::vector<int>> list_ids(const std::string& name) {
  std::string path = "/proc/sysvipc/" + name;
  int err = 0;
  auto text = proc::read_text_file(path, &err);
  if (!text.ok()) return text.error();
  std::string_view rest = *text, line;
  proc::next_line(rest, line);  // the header
  std::vector<int> ids;
  while (proc::next_line(rest, line)) {
    std::string_view key = proc::next_token(line);
    auto id = proc::parse_i64(proc::next_token(line));
    if (!key.empty() && id && *id >= 0 && *id <= INT32_MAX) ids.push_back(static_cast<int>(*id));
  }
  return ids;
}

// Objects are seen only in ckpt's own IPC namespace: a tree in another one cannot be saved
// (nor restored here) with its objects.
Result<bool> same_ipc_namespace(pid_t pid) {
  CKPT_TRY_ASSIGN(std::string theirs, proc::read_proc_link(pid, "ns/ipc"));
  CKPT_TRY_ASSIGN(std::string ours, proc::read_proc_link(::getpid(), "ns/ipc"));
  return theirs == ours;
}

struct Attachment {
  const DumpContext* ctx;
  const proc::MapEntry* first;  // the mapping at offset 0
};

Error partial(const DumpContext& ctx, uint64_t id, uint64_t at) {
  return errorf(
      "pid {}: System V shared memory {} is attached at {:#x} only in part, which ckpt cannot "
      "save yet",
      ctx.pid, id, at);
}

// Each attachment must be whole: a run of adjacent mappings of the segment from offset 0 to its
// end (mprotect splits one). A part unmapped since could not be attached again alone.
Status check_whole(const DumpContext& ctx, const std::map<int, uint64_t>& sizes) {
  struct Run {
    int id;
    uint64_t start, end, covered;
  };
  std::optional<Run> run;
  auto close = [&]() -> Status {
    if (run && run->covered != ((sizes.at(run->id) + kPage - 1) & ~(kPage - 1)))
      return partial(ctx, run->id, run->start);
    run.reset();
    return {};
  };
  for (auto& m : ctx.maps) {
    int id = static_cast<int>(m.inode);
    bool attachment = is_attachment(m);
    if (attachment && run && run->id == id && run->end == m.start && m.offset == run->covered) {
      run->covered += m.size();
      run->end = m.end;
      continue;
    }
    CKPT_TRY(close());
    if (!attachment) continue;
    if (m.offset != 0) return partial(ctx, m.inode, m.start);
    run = Run{id, m.start, m.end, m.size()};
  }
  return close();
}

Result<ShmSegment> save_segment(int id, const Attachment& at, image::GenerationWriter& writer) {
  shmid_ds ds{};
  if (::shmctl(id, IPC_STAT, &ds) < 0)
    return sys_error(
        fmt::format("pid {}: shmctl(IPC_STAT) of System V shared memory {}", at.ctx->pid, id));
  ShmSegment s;
  s.ipc = object_of(id, ds.shm_perm);
  s.size = ds.shm_segsz;
  s.removed = (ds.shm_perm.mode & SHM_DEST) != 0;
  s.locked = (ds.shm_perm.mode & SHM_LOCKED) != 0;
  // The attachment's file in /proc opens as the segment's tmpfs file, which can be read and
  // knows its holes: nothing is attached or run in the target to read it.
  const proc::MapEntry& m = *at.first;
  std::string link = fmt::format("/proc/{}/map_files/{:x}-{:x}", at.ctx->pid, m.start, m.end);
  CKPT_TRY_ASSIGN(ScopedFd fd, open_file(link, O_RDONLY));
  struct statfs fs {};
  if (::fstatfs(fd.get(), &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC)
    return errorf(
        "pid {}: System V shared memory {} is made of huge pages (SHM_HUGETLB), which ckpt "
        "cannot save yet",
        at.ctx->pid, id);
  CKPT_TRY_ASSIGN(auto ranges, shared_memory::data_ranges(fd.get(), s.size));
  CKPT_TRY_ASSIGN(image::SectionWriter * out, writer.begin_section(section_name(id)));
  std::string what = fmt::format("System V shared memory {} (pid {})", id, at.ctx->pid);
  CKPT_TRY(shared_memory::copy_out(fd.get(), ranges, *out, what));
  for (auto& [off, len] : ranges) s.data.push_back({off, off + len});
  return s;
}

Status dump_segments(const std::vector<DumpContext*>& procs, SysvIpcRecord& out) {
  std::map<int, Attachment> first;
  for (auto* ctx : procs)
    for (auto& m : ctx->maps)
      if (is_attachment(m) && m.offset == 0)
        first.emplace(static_cast<int>(m.inode), Attachment{ctx, &m});
  if (first.empty()) return {};
  std::map<int, uint64_t> sizes;
  for (auto& [id, at] : first) {
    CKPT_TRY_ASSIGN(ShmSegment s, save_segment(id, at, *procs.front()->writer));
    sizes[id] = s.size;
    out.shm.push_back(std::move(s));
  }
  for (auto* ctx : procs) {
    for (auto& m : ctx->maps)
      if (is_attachment(m) && !sizes.count(static_cast<int>(m.inode)))
        return partial(*ctx, m.inode, m.start);
    CKPT_TRY(check_whole(*ctx, sizes));
  }
  return {};
}

// The tree's processes by PID. A PID an object recorded before its process started is an
// earlier process's, whose PID was reused (a set left behind by a program long gone must not
// become the tree's). Start times are read only for PIDs an object names: most dumps meet none.
class TreePids {
 public:
  explicit TreePids(const std::vector<DumpContext*>& procs) {
    for (auto* ctx : procs) started_[ctx->pid] = std::nullopt;
  }
  // Whether `pid`, recorded by the kernel at `when` (whole seconds of the real-time clock), names
  // a process of the tree: a second of slack for the clocks' rounding.
  bool recorded(pid_t pid, int64_t when) {
    auto it = started_.find(pid);
    if (it == started_.end()) return false;
    if (!it->second) it->second = start_of(pid);
    return when + 1 >= *it->second;
  }

 private:
  // When `pid` started, in seconds of the real-time clock; 0 (nothing is older) if unreadable.
  static int64_t start_of(pid_t pid) {
    auto st = proc::read_stat(pid);
    if (!st.ok()) return 0;
    timespec real{}, boot{};
    ::clock_gettime(CLOCK_REALTIME, &real);
    ::clock_gettime(CLOCK_BOOTTIME, &boot);
    double since_boot =
        static_cast<double>(st->starttime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
    return static_cast<int64_t>(static_cast<double>(real.tv_sec - boot.tv_sec) + since_boot +
                                static_cast<double>(real.tv_nsec - boot.tv_nsec) / 1e9);
  }

  std::map<pid_t, std::optional<int64_t>> started_;
};

// A set belongs to the tree when one of its processes changed one of its semaphores last.
Result<std::optional<SemSet>> read_sem_set(int id, TreePids& pids) {
  semid_ds ds{};
  SemArg arg{};
  arg.buf = &ds;
  if (::semctl(id, 0, IPC_STAT, arg) < 0) {
    // Removed meanwhile, or another user's that ckpt may not read (not the tree's then).
    if (errno == EINVAL || errno == EIDRM || errno == EACCES) return std::optional<SemSet>();
    return sys_error(fmt::format("semctl(IPC_STAT) of System V semaphore set {}", id));
  }
  SemSet s;
  s.ipc = object_of(id, ds.sem_perm);
  std::vector<unsigned short> values(ds.sem_nsems);
  arg.array = values.data();
  if (::semctl(id, 0, GETALL, arg) < 0)
    return sys_error(fmt::format("semctl(GETALL) of System V semaphore set {}", id));
  bool ours = false;
  // semop() sets sem_otime, SETVAL and SETALL sem_ctime: no sempid is newer than both.
  int64_t changed = std::max<int64_t>(ds.sem_otime, ds.sem_ctime);
  for (size_t i = 0; i < values.size(); ++i) {
    int pid = ::semctl(id, static_cast<int>(i), GETPID);
    if (pid < 0) return sys_error(fmt::format("semctl(GETPID) of semaphore {} of set {}", i, id));
    ours = ours || pids.recorded(pid, changed);
    s.values.push_back(values[i]);
    s.pids.push_back(pid);
  }
  if (!ours) return std::optional<SemSet>();
  return std::optional<SemSet>(std::move(s));
}

// Reads every message without taking it (MSG_COPY: by position, needs CONFIG_CHECKPOINT_RESTORE).
Status copy_messages(int id, const msqid_ds& ds, MsgQueue& q) {
  size_t room = std::max<size_t>(ds.__msg_cbytes, 1);
  std::vector<unsigned char> buf(sizeof(long) + room);
  for (msgqnum_t i = 0; i < ds.msg_qnum; ++i) {
    ssize_t n = ::msgrcv(id, buf.data(), room, static_cast<long>(i), MSG_COPY | IPC_NOWAIT);
    if (n < 0 && errno == ENOSYS)
      return errorf(
          "System V message queue {} holds messages, which this kernel cannot copy without "
          "taking them (no CONFIG_CHECKPOINT_RESTORE)",
          id);
    if (n < 0) return sys_error(fmt::format("msgrcv(MSG_COPY) message {} of queue {}", i, id));
    Message m;
    std::memcpy(&m.type, buf.data(), sizeof(long));
    m.text.assign(buf.begin() + sizeof(long), buf.begin() + sizeof(long) + n);
    q.messages.push_back(std::move(m));
  }
  return {};
}

// A queue belongs to the tree when its last sender or receiver is one of its processes.
Result<std::optional<MsgQueue>> read_queue(int id, TreePids& pids) {
  msqid_ds ds{};
  if (::msgctl(id, IPC_STAT, &ds) < 0) {
    if (errno == EINVAL || errno == EIDRM || errno == EACCES) return std::optional<MsgQueue>();
    return sys_error(fmt::format("msgctl(IPC_STAT) of System V message queue {}", id));
  }
  if (!pids.recorded(ds.msg_lspid, ds.msg_stime) && !pids.recorded(ds.msg_lrpid, ds.msg_rtime))
    return std::optional<MsgQueue>();
  MsgQueue q;
  q.ipc = object_of(id, ds.msg_perm);
  q.qbytes = ds.msg_qbytes;
  q.lspid = ds.msg_lspid;
  q.lrpid = ds.msg_lrpid;
  CKPT_TRY(copy_messages(id, ds, q));
  return std::optional<MsgQueue>(std::move(q));
}

Status dump_sems_and_queues(TreePids& pids, SysvIpcRecord& out) {
  CKPT_TRY_ASSIGN(auto sems, list_ids("sem"));
  for (int id : sems) {
    CKPT_TRY_ASSIGN(auto s, read_sem_set(id, pids));
    if (s) out.sem.push_back(std::move(*s));
  }
  CKPT_TRY_ASSIGN(auto queues, list_ids("msg"));
  for (int id : queues) {
    CKPT_TRY_ASSIGN(auto q, read_queue(id, pids));
    if (q) out.msg.push_back(std::move(*q));
  }
  return {};
}

}  // namespace

bool is_attachment(const proc::MapEntry& m) {
  return m.shared && m.kind == proc::MapKind::file && m.path.starts_with(kSysvPrefix) &&
         m.path.size() == kSysvPrefix.size() + 8;
}

Status dump(const std::vector<DumpContext*>& procs) {
  if (procs.empty()) return {};
  CKPT_TRY_ASSIGN(bool same_ns, same_ipc_namespace(procs.front()->pid));
  bool attached = false;
  for (auto* ctx : procs)
    for (auto& m : ctx->maps) attached = attached || is_attachment(m);
  if (!same_ns) {
    if (attached)
      return errorf(
          "pid {}: it attaches System V shared memory of another IPC namespace, which ckpt "
          "cannot save yet",
          procs.front()->pid);
    return {};  // its semaphores and queues are not visible from here (docs/engine.md)
  }
  TreePids pids(procs);
  SysvIpcRecord rec;
  CKPT_TRY(dump_segments(procs, rec));
  CKPT_TRY(dump_sems_and_queues(pids, rec));
  if (rec.empty()) return {};
  log::info("dump", "System V IPC: {} segments, {} semaphore sets, {} message queues",
            rec.shm.size(), rec.sem.size(), rec.msg.size());
  procs.front()->tree->image.sysv_ipc = schema::encode(rec);
  return {};
}

Result<SysvIpcRecord> record_of(const schema::ImageRoot& image) {
  if (!image.sysv_ipc) return SysvIpcRecord{};
  return schema::from_value<SysvIpcRecord>(*image.sysv_ipc, "/sysv_ipc");
}

}  // namespace ckpt::sysv_ipc
