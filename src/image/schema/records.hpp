#pragma once
// What a process image holds: every record of the section "process.cbor", in one place. The
// byte layout is CBOR (RFC 8949) as written by codec.hpp; docs/image-format.md describes each
// record. Bulk data lives in sections of its own: memory pages ("memory.pages",
// "proc.PID.memory.pages"), contents of deleted files ("files.deleted.ID") and of shared memory
// objects ("shm.ID").
//
// Versions: kProcessImageFormat is written in the root record. A field added later is optional
// (absent in older images) and does not change the format; anything an older reader would
// misread increments it. This ckpt reads exactly the formats from kOldestReadable up to its
// own and refuses others by name (older images: restore them with the ckpt that wrote them).
// Each fd kind's own payload is a record in that kind's file (src/resources/fds/).
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "image/schema/codec.hpp"

namespace ckpt::schema {

inline constexpr uint32_t kProcessImageFormat = 4;
inline constexpr uint32_t kOldestReadable = 3;
inline constexpr std::string_view kProcessSection = "process.cbor";

struct Range {  // [start, end) of addresses or offsets
  uint64_t start = 0;
  uint64_t end = 0;
  template <class V>
  void visit(V& v) {
    v("start", start), v("end", end);
  }
};

struct TimeSpec {  // seconds and nano- (or micro-) seconds
  int64_t sec = 0;
  int64_t frac = 0;
  template <class V>
  void visit(V& v) {
    v("sec", sec), v("frac", frac);
  }
  bool zero() const { return sec == 0 && frac == 0; }
};

// ---- process tree ------------------------------------------------------------------------

// How a restored process gets its session and group relative to what its parent puppet has.
enum class SessionPlan { inherit, lead };
enum class GroupPlan { inherit, lead, join };
template <>
struct EnumNames<SessionPlan> {
  static constexpr std::array<std::string_view, 2> names = {"inherit", "lead"};
};
template <>
struct EnumNames<GroupPlan> {
  static constexpr std::array<std::string_view, 3> names = {"inherit", "lead", "join"};
};

struct TreeRecord {
  int32_t ppid = 0, pgid = 0, sid = 0;
  SessionPlan session = SessionPlan::inherit;
  GroupPlan group = GroupPlan::inherit;
  int32_t leader = 0;  // the group to join (GroupPlan::join)
  template <class V>
  void visit(V& v) {
    v("ppid", ppid), v("pgid", pgid), v("sid", sid), v("session", session), v("group", group);
    v("leader", leader);
  }
};

struct ZombieRecord {  // a child that ended and was not waited for: only its exit remains
  int32_t exit_status = 0;
  std::string comm;
  template <class V>
  void visit(V& v) {
    v("exit_status", exit_status), v("comm", comm);
  }
};

// ---- the task: address-space layout, credentials, per-process settings --------------------

struct MmLayout {  // prctl(PR_SET_MM_MAP)
  uint64_t start_code = 0, end_code = 0, start_data = 0, end_data = 0, start_brk = 0, brk = 0;
  uint64_t start_stack = 0, arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
  Bytes auxv;
  template <class V>
  void visit(V& v) {
    v("start_code", start_code), v("end_code", end_code), v("start_data", start_data);
    v("end_data", end_data), v("start_brk", start_brk), v("brk", brk);
    v("start_stack", start_stack), v("arg_start", arg_start), v("arg_end", arg_end);
    v("env_start", env_start), v("env_end", env_end), v("auxv", auxv);
  }
};

struct Capabilities {
  uint64_t inheritable = 0, permitted = 0, effective = 0, bounding = 0, ambient = 0;
  template <class V>
  void visit(V& v) {
    v("inheritable", inheritable), v("permitted", permitted), v("effective", effective);
    v("bounding", bounding), v("ambient", ambient);
  }
};

struct Credentials {
  std::array<uint32_t, 4> uid{}, gid{};  // real, effective, saved, filesystem
  std::vector<uint32_t> groups;
  template <class V>
  void visit(V& v) {
    v("uid", uid), v("gid", gid), v("groups", groups);
  }
};

struct Rlimit {
  uint64_t cur = 0, max = 0;
  template <class V>
  void visit(V& v) {
    v("cur", cur), v("max", max);
  }
};

struct TaskRecord {
  MmLayout mm;
  Credentials creds;
  std::string exe, cwd, root;
  std::optional<int32_t> cwd_deleted;  // DeletedFile::id of a cwd removed while in use
  std::optional<int32_t> exe_deleted;  // DeletedFile::id of an executable removed while it runs
  uint32_t personality = 0;
  uint32_t umask = 022;
  int32_t dumpable = 1;
  bool no_new_privs = false;
  std::vector<Rlimit> rlimits;  // indexed by RLIMIT_*
  // Process-wide settings (mm, signal struct): absent in images that did not save them.
  std::optional<int32_t> oom_score_adj;
  std::optional<bool> child_subreaper;
  std::optional<bool> thp_disable;
  std::optional<bool> thp_except_advised;  // PR_THP_DISABLE_EXCEPT_ADVISED (Linux 6.18+)
  // The nice value of its session's autogroup (/proc/PID/autogroup): a restored session leader
  // starts a new autogroup, which gets it back.
  std::optional<int32_t> autogroup_nice;
  template <class V>
  void visit(V& v) {
    v("mm", mm), v("creds", creds), v("exe", exe), v("cwd", cwd), v("root", root);
    v("personality", personality), v("umask", umask), v("dumpable", dumpable);
    v("no_new_privs", no_new_privs), v("rlimits", rlimits), v("oom_score_adj", oom_score_adj);
    v("child_subreaper", child_subreaper), v("thp_disable", thp_disable);
    v("thp_except_advised", thp_except_advised), v("cwd_deleted", cwd_deleted);
    v("exe_deleted", exe_deleted), v("autogroup_nice", autogroup_nice);
  }
};

// ---- threads ------------------------------------------------------------------------------

struct Rseq {
  uint64_t abi_pointer = 0;
  uint32_t abi_size = 0, signature = 0, flags = 0;
  template <class V>
  void visit(V& v) {
    v("abi_pointer", abi_pointer), v("abi_size", abi_size), v("signature", signature);
    v("flags", flags);
  }
};

struct AltStack {
  uint64_t sp = 0, size = 0;
  int32_t flags = 0;
  template <class V>
  void visit(V& v) {
    v("sp", sp), v("size", size), v("flags", flags);
  }
};

struct MemPolicy {  // get_mempolicy of the thread
  int32_t mode = 0;
  std::vector<uint64_t> nodes;  // nodemask words
  template <class V>
  void visit(V& v) {
    v("mode", mode), v("nodes", nodes);
  }
};

struct SchedDeadline {  // SCHED_DEADLINE parameters, nanoseconds
  uint64_t runtime = 0, deadline = 0, period = 0;
  template <class V>
  void visit(V& v) {
    v("runtime", runtime), v("deadline", deadline), v("period", period);
  }
};

// Per-thread settings a program can observe. Each is optional: absent, the restored thread keeps
// what the restorer gives it (images written before they were saved).
struct ThreadSettings {
  std::optional<int32_t> nice;
  std::optional<uint32_t> sched_policy;
  std::optional<uint32_t> sched_priority;
  std::optional<uint64_t> sched_flags;
  std::optional<SchedDeadline> sched_deadline;
  std::vector<uint64_t> affinity;  // CPU mask words; empty: not saved
  std::optional<uint64_t> timer_slack_ns;
  std::optional<int32_t> ioprio;
  std::optional<int32_t> pdeathsig;
  std::optional<uint32_t> securebits;
  std::optional<Capabilities> caps;
  std::optional<MemPolicy> mempolicy;
  std::optional<bool> no_new_privs;  // per thread; TaskRecord's is the main thread's
  template <class V>
  void visit(V& v) {
    v("nice", nice), v("sched_policy", sched_policy), v("sched_priority", sched_priority);
    v("sched_flags", sched_flags), v("sched_deadline", sched_deadline);
    v.opt("affinity", affinity);
    v("timer_slack_ns", timer_slack_ns), v("ioprio", ioprio), v("pdeathsig", pdeathsig);
    v("securebits", securebits), v("caps", caps), v("mempolicy", mempolicy);
    v("no_new_privs", no_new_privs);
  }
};

struct ThreadRecord {
  int32_t tid = 0;
  arch::RegsRecord regs;
  Bytes xstate;  // PTRACE_GETREGSET NT_X86_XSTATE
  uint64_t sigmask = 0;
  Rseq rseq;
  uint64_t robust_list = 0, robust_list_len = 0;
  uint64_t clear_child_tid = 0;
  AltStack altstack;
  std::string comm;
  int32_t seccomp_mode = 0;     // 0 off, 1 strict, 2 filter
  int32_t seccomp_filter = -1;  // newest filter of its chain (SeccompFilter::id), -1 none
  std::vector<Bytes> pending;   // siginfo of signals queued for this thread only
  ThreadSettings settings;
  template <class V>
  void visit(V& v) {
    v("tid", tid), v("regs", regs), v("xstate", xstate), v("sigmask", sigmask), v("rseq", rseq);
    v("robust_list", robust_list), v("robust_list_len", robust_list_len);
    v("clear_child_tid", clear_child_tid), v("altstack", altstack), v("comm", comm);
    v("seccomp_mode", seccomp_mode), v("seccomp_filter", seccomp_filter), v("pending", pending);
    v.opt("settings", settings);
  }
};

struct SeccompFilter {  // one BPF program; a chain is followed through `parent`
  int32_t id = 0;
  int32_t parent = -1;
  uint64_t flags = 0;
  Bytes prog;  // struct sock_filter[]
  template <class V>
  void visit(V& v) {
    v("id", id), v("parent", parent), v("flags", flags), v("prog", prog);
  }
};

// ---- signals and timers ---------------------------------------------------------------------

struct SigAction {
  int32_t signo = 0;
  uint64_t handler = 0, flags = 0, restorer = 0, mask = 0;
  template <class V>
  void visit(V& v) {
    v("signo", signo), v("handler", handler), v("flags", flags), v("restorer", restorer);
    v("mask", mask);
  }
};

struct SignalsRecord {
  std::vector<SigAction> actions;  // only those not at their default
  std::vector<Bytes> pending;      // siginfo of signals queued for the whole process
  template <class V>
  void visit(V& v) {
    v("actions", actions), v("pending", pending);
  }
};

struct ItimerRecord {  // ITIMER_REAL, _VIRTUAL, _PROF (microseconds)
  TimeSpec interval, value;
  template <class V>
  void visit(V& v) {
    v("interval", interval), v("value", value);
  }
};

struct PosixTimerRecord {
  int32_t id = 0, clock = 0, notify = 0, signo = 0, tid = 0;
  uint64_t sigev_value = 0;
  TimeSpec interval, remaining;  // nanoseconds
  template <class V>
  void visit(V& v) {
    v("id", id), v("clock", clock), v("notify", notify), v("signo", signo), v("tid", tid);
    v("sigev_value", sigev_value), v("interval", interval), v("remaining", remaining);
  }
};

struct TimersRecord {
  std::array<ItimerRecord, 3> itimers{};
  std::vector<PosixTimerRecord> posix;  // by id
  template <class V>
  void visit(V& v) {
    v("itimers", itimers), v("posix", posix);
  }
};

// ---- memory -------------------------------------------------------------------------------

// What of a mapping's memory the image holds.
enum class Content { none, private_pages, all };
template <>
struct EnumNames<Content> {
  static constexpr std::array<std::string_view, 3> names = {"none", "private", "all"};
};

struct Vma {
  uint64_t start = 0, end = 0;
  int32_t prot = 0;
  bool shared = false;
  uint64_t offset = 0;
  std::string kind;  // proc::MapKind name: anonymous, file, heap, stack, vdso, ...
  std::string path;
  bool deleted = false;
  Content content = Content::none;
  std::vector<std::string> vm_flags;  // two-letter smaps codes
  std::vector<Range> pages;           // saved ranges, in the pages section in this order
  // Pages not saved here: the root's at the same address, shared with it since fork() (a child's
  // mapping only; cow_shared.hpp).
  std::vector<Range> from_root;
  std::optional<uint64_t> file_size;  // a mapped file as it was, checked before restore
  std::optional<int64_t> file_mtime_ns;
  std::optional<int32_t> shm;           // ShmObject::id of a shared memory object
  std::optional<int32_t> sysv_shm;      // id of the System V segment attached here (sysv_ipc.hpp)
  std::optional<int32_t> deleted_file;  // DeletedFile::id of a deleted file mapped from its inode
  template <class V>
  void visit(V& v) {
    v("start", start), v("end", end), v("prot", prot), v("shared", shared), v("offset", offset);
    v("kind", kind), v("path", path), v("deleted", deleted), v("content", content);
    v("vm_flags", vm_flags), v("pages", pages), v("file_size", file_size);
    v("file_mtime_ns", file_mtime_ns), v("shm", shm), v("sysv_shm", sysv_shm);
    v("deleted_file", deleted_file);
    v.opt("from_root", from_root);
  }
  bool has_flag(std::string_view code) const {
    for (auto& f : vm_flags)
      if (f == code) return true;
    return false;
  }
};

struct MemoryRecord {
  std::vector<Vma> vmas;
  uint64_t page_bytes = 0;
  template <class V>
  void visit(V& v) {
    v("vmas", vmas), v("page_bytes", page_bytes);
  }
};

struct ShmObject {  // shared anonymous memory or a memfd, saved once for every mapping of it
  int32_t id = 0;
  std::string path;  // "/dev/zero" or "/memfd:NAME"
  uint64_t size = 0;
  std::vector<Range> data;  // offsets holding data, in the section in this order
  // A memfd's seals (F_GET_SEALS; F_SEAL_SEAL alone: made without MFD_ALLOW_SEALING).
  std::optional<uint32_t> seals;
  template <class V>
  void visit(V& v) {
    v("id", id), v("path", path), v("size", size), v("data", data), v("seals", seals);
  }
};

// ---- files --------------------------------------------------------------------------------

struct FdRecord {  // one descriptor of a process: a number for an open file
  int32_t fd = 0;
  uint32_t open_file = 0;  // OpenFile::id
  bool cloexec = false;
  template <class V>
  void visit(V& v) {
    v("fd", fd), v("open_file", open_file), v("cloexec", cloexec);
  }
};

struct FileOwner {  // F_GETOWN_EX / F_GETSIG of an open file (O_ASYNC signals)
  int32_t type = 0, pid = 0, signo = 0;
  template <class V>
  void visit(V& v) {
    v("type", type), v("pid", pid), v("signo", signo);
  }
};

// Options every kind of socket has, kept when any differs from its default.
struct SocketOptions {
  int64_t rcvtimeo_us = 0, sndtimeo_us = 0;  // SO_RCVTIMEO, SO_SNDTIMEO (0: none)
  int32_t rcvlowat = 1;                      // SO_RCVLOWAT
  int32_t linger_s = -1;                     // SO_LINGER's seconds, -1 when off
  template <class V>
  void visit(V& v) {
    v("rcvtimeo_us", rcvtimeo_us), v("sndtimeo_us", sndtimeo_us), v("rcvlowat", rcvlowat),
        v("linger_s", linger_s);
  }
};

// A file lock (docs/engine.md, "File locks"). flock, OFD locks and leases belong to an open file
// (OpenFile::locks); POSIX record locks belong to a process (ProcessRecord::locks) and name the
// descriptor they were taken through.
enum class LockKind { posix, flock, ofd, lease };
template <>
struct EnumNames<LockKind> {
  static constexpr std::array<std::string_view, 4> names = {"posix", "flock", "ofd", "lease"};
};

struct LockRecord {
  LockKind kind = LockKind::posix;
  bool write = false;  // exclusive (F_WRLCK, LOCK_EX); else shared
  uint64_t start = 0;
  std::optional<uint64_t> end;  // last byte, inclusive; absent: to the end of the file
  std::optional<int32_t> fd;    // posix: the descriptor of its process it was taken through
  // lease: a process was opening the file and the lease was being broken; `write` is then what
  // the lease is taken as again (the waiting open, restarted, breaks it anew).
  bool breaking = false;
  template <class V>
  void visit(V& v) {
    v("kind", kind), v("write", write), v("start", start), v("end", end), v("fd", fd);
    v.opt("breaking", breaking);
  }
  bool operator==(const LockRecord&) const = default;
};

// An open file description: what open() made, shared by every fd dup'ed or inherited from it,
// in any process of the image. `kind` names the plug-in (src/resources/fds/) that saved it and
// that alone reads `payload`.
struct OpenFile {
  uint32_t id = 0;
  std::string kind;
  uint32_t flags = 0;  // status flags and access mode (O_CLOEXEC is per descriptor)
  uint64_t pos = 0;
  std::string path;  // as /proc showed it: a path, "pipe:[INO]", "anon_inode:[eventfd]"...
  std::optional<FileOwner> owner;
  Value payload;
  std::vector<LockRecord> locks;                // flock, OFD locks and leases held through it
  std::optional<SocketOptions> socket_options;  // a socket's, when any is not the default
  template <class V>
  void visit(V& v) {
    v("id", id), v("kind", kind), v("flags", flags), v("pos", pos), v("path", path);
    v("owner", owner), v.opt("payload", payload), v.opt("locks", locks);
    v("socket_options", socket_options);
  }
};

struct DeletedFile {  // an inode that was unlinked while open: contents in files.deleted.ID
  int32_t id = 0;
  std::string path;  // its last name
  uint64_t size = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
  bool directory = false;  // a directory removed while open or a cwd: no contents
  template <class V>
  void visit(V& v) {
    v("id", id), v("path", path), v("size", size), v("mode", mode), v("uid", uid), v("gid", gid);
    v.opt("directory", directory);
  }
};

// ---- a process and the whole image ----------------------------------------------------------

struct ProcessRecord {
  int32_t pid = 0;
  std::optional<ZombieRecord> zombie;  // set: nothing below is used
  TreeRecord tree;
  TaskRecord task;
  std::vector<ThreadRecord> threads;  // threads[0] is the main thread
  SignalsRecord signals;
  TimersRecord timers;
  std::vector<SeccompFilter> seccomp_filters;
  MemoryRecord memory;
  std::vector<FdRecord> fds;
  std::vector<LockRecord> locks;  // POSIX record locks it holds
  template <class V>
  void visit(V& v) {
    v("pid", pid), v("zombie", zombie), v("tree", tree), v("task", task), v("threads", threads);
    v("signals", signals), v("timers", timers), v("seccomp_filters", seccomp_filters);
    v("memory", memory), v("fds", fds), v.opt("locks", locks);
  }
};

struct UtsRecord {  // a UTS namespace of the tree's own (not ckpt's): its names
  std::string hostname, domainname;
  template <class V>
  void visit(V& v) {
    v("hostname", hostname), v("domainname", domainname);
  }
};

struct TimeNsRecord {  // a time namespace of the tree's own (not ckpt's): its clock offsets
  int64_t monotonic_sec = 0, monotonic_nsec = 0;
  int64_t boottime_sec = 0, boottime_nsec = 0;
  template <class V>
  void visit(V& v) {
    v("monotonic_sec", monotonic_sec), v("monotonic_nsec", monotonic_nsec);
    v("boottime_sec", boottime_sec), v("boottime_nsec", boottime_nsec);
  }
};

struct VdsoRecord {   // the kernel's vdso at dump time (every process of a dump has the same)
  uint64_t hash = 0;  // XXH3 of its bytes
  Bytes image;        // its bytes, for the proxy when a restore runs on another kernel
  template <class V>
  void visit(V& v) {
    v("hash", hash), v("image", image);
  }
};

struct ImageRoot {
  uint32_t format = kProcessImageFormat;
  std::string ckpt_version;
  std::string arch = arch::kName;
  int32_t root_pid = 0;
  bool shell_job = false;
  std::vector<ProcessRecord> processes;  // parents before children; [0] is the root
  std::vector<OpenFile> open_files;
  std::vector<DeletedFile> deleted_files;
  std::vector<ShmObject> shm_objects;
  VdsoRecord vdso;
  std::optional<Value> sysv_ipc;  // System V IPC objects: sysv_ipc.hpp's SysvIpcRecord
  // When the root is its PID namespace's init: the last PID given there, so that the restored
  // namespace goes on giving the PIDs the original would have given next.
  std::optional<int32_t> ns_last_pid;
  // The tree's UTS namespace when it is not the dumper's: the root's puppet makes one with these
  // names, which every other process inherits.
  std::optional<UtsRecord> uts;
  // The same for its time namespace: the offsets of its monotonic and boot-time clocks.
  std::optional<TimeNsRecord> time_ns;
  template <class V>
  void visit(V& v) {
    v("format", format), v("ckpt_version", ckpt_version), v("arch", arch);
    v("root_pid", root_pid), v("shell_job", shell_job), v("processes", processes);
    v("open_files", open_files), v("deleted_files", deleted_files);
    v("shm_objects", shm_objects), v("vdso", vdso), v("sysv_ipc", sysv_ipc);
    v("ns_last_pid", ns_last_pid), v("uts", uts), v("time_ns", time_ns);
  }
};

// The root record as bytes, and back: the format version and architecture are checked first,
// so that an image of another version is refused by name rather than misread; a decoded image
// has passed validate() (validate.hpp).
std::vector<std::byte> encode_image(const ImageRoot& root);
Result<ImageRoot> decode_image(std::span<const std::byte> bytes);

}  // namespace ckpt::schema
