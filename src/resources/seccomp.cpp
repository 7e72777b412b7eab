#include "resources/seccomp.hpp"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "proc/status.hpp"

namespace ckpt::seccomp {
namespace {

constexpr uint64_t kPage = 4096;
constexpr int kModeStrict = SECCOMP_MODE_STRICT;
constexpr int kModeFilter = SECCOMP_MODE_FILTER;

struct Filter {
  std::string prog;  // the sock_filter array, as bytes
  uint64_t flags = 0;
};

Error filter_error(pid_t tid, const char* what) {
  if (errno == EACCES || errno == EPERM)
    return make_error(
        fmt::format("thread {}: reading its seccomp filters needs CAP_SYS_ADMIN", tid), errno);
  return sys_error(fmt::format("ptrace({}) tid {}", what, tid));
}

// The thread's filters, newest first (index 0 is the one installed last).
Result<std::vector<Filter>> read_chain(pid_t tid) {
  std::vector<Filter> chain;
  for (unsigned long n = 0;; ++n) {
    long count = ::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, n, nullptr);
    if (count < 0 && errno == ENOENT) break;
    if (count < 0) return filter_error(tid, "PTRACE_SECCOMP_GET_FILTER");
    Filter f;
    f.prog.resize(static_cast<size_t>(count) * sizeof(sock_filter));
    if (::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, n, f.prog.data()) != count)
      return filter_error(tid, "PTRACE_SECCOMP_GET_FILTER");
    __ptrace_seccomp_metadata md{n, 0};
    if (::ptrace(PTRACE_SECCOMP_GET_METADATA, tid, sizeof(md), &md) < 0)
      return filter_error(tid, "PTRACE_SECCOMP_GET_METADATA");
    f.flags = md.flags;
    chain.push_back(std::move(f));
  }
  return chain;
}

// Filters are identified by their program, flags and parent: a filter inherited by several
// threads (or installed identically in each) is saved once.
class FilterTable {
 public:
  explicit FilterTable(std::vector<schema::SeccompFilter>& out) : out_(out) {}
  int add(int parent, const Filter& f) {
    auto key = std::make_tuple(parent, f.flags, f.prog);
    auto [it, added] = ids_.emplace(key, static_cast<int>(ids_.size()));
    if (added)
      out_.push_back({it->second, parent, f.flags, schema::Bytes(f.prog.begin(), f.prog.end())});
    return it->second;
  }

 private:
  std::map<std::tuple<int, uint64_t, std::string>, int> ids_;
  std::vector<schema::SeccompFilter>& out_;
};

}  // namespace

Status suspend_for_dump(DumpContext& ctx) {
  for (auto& t : ctx.threads) {
    CKPT_TRY_ASSIGN(proc::ProcStatus st, proc::read_thread_status(ctx.pid, t.tid));
    if (st.seccomp == 0) continue;
    Status set = t.tracee.set_options(t.tracee.options() | PTRACE_O_SUSPEND_SECCOMP);
    if (set.ok()) continue;
    if (set.error().errnum == EPERM)
      return errorf(
          "dump pid {}: thread {} runs under seccomp; ckpt needs CAP_SYS_ADMIN to suspend it "
          "while it works in the process",
          ctx.pid, t.tid);
    if (set.error().errnum == EINVAL)
      return errorf(
          "dump pid {}: thread {} runs under seccomp and this kernel cannot suspend it for a "
          "tracer (CONFIG_CHECKPOINT_RESTORE)",
          ctx.pid, t.tid);
    return set.error().wrap(fmt::format("dump pid {}", ctx.pid));
  }
  return {};
}

Status dump(DumpContext& ctx) {
  ctx.rec.seccomp_filters.clear();
  FilterTable table(ctx.rec.seccomp_filters);
  for (size_t i = 0; i < ctx.threads.size(); ++i) {
    pid_t tid = ctx.threads[i].tid;
    schema::ThreadRecord& rec = ctx.rec.threads.at(i);
    CKPT_TRY_ASSIGN(proc::ProcStatus st, proc::read_thread_status(ctx.pid, tid));
    rec.seccomp_mode = st.seccomp;
    rec.seccomp_filter = -1;
    if (st.seccomp == kModeFilter) {
      auto chain = read_chain(tid);
      if (!chain.ok()) return chain.error().wrap(fmt::format("pid {}", ctx.pid));
      if (chain->empty() ||
          (st.seccomp_filters != 0 && chain->size() != static_cast<size_t>(st.seccomp_filters)))
        return errorf("pid {}: thread {} has {} seccomp filters, but ptrace shows {}", ctx.pid, tid,
                      st.seccomp_filters, chain->size());
      int parent = -1;
      for (auto it = chain->rbegin(); it != chain->rend(); ++it) parent = table.add(parent, *it);
      rec.seccomp_filter = parent;
    } else if (st.seccomp != 0 && st.seccomp != kModeStrict) {
      return errorf("pid {}: thread {} has unknown seccomp mode {}", ctx.pid, tid, st.seccomp);
    }
  }
  return {};
}

namespace {

using Filters = std::map<int, const schema::SeccompFilter*>;

Status install(RestoreContext& ctx, ptrace::RemoteSyscalls& rs, const schema::ThreadRecord& thread,
               const Filters& filters, uint64_t area) {
  if (thread.seccomp_mode == kModeStrict) {
    CKPT_TRY(rs.call("seccomp(SECCOMP_SET_MODE_STRICT)", SYS_seccomp, {SECCOMP_SET_MODE_STRICT}));
    return {};
  }
  std::vector<const schema::SeccompFilter*> chain;  // newest first
  for (int id = thread.seccomp_filter; id >= 0;) {
    auto it = filters.find(id);
    if (it == filters.end() || chain.size() > filters.size())
      return errorf("seccomp filter {} is missing from the image", id);
    chain.push_back(it->second);
    id = it->second->parent;
  }
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const schema::Bytes& prog = (*it)->prog;
    if (prog.size() % sizeof(sock_filter) != 0 || prog.size() / sizeof(sock_filter) > BPF_MAXINSNS)
      return errorf("seccomp filter {} has a program of {} bytes", (*it)->id, prog.size());
    arch::KernelFprog fprog{
        static_cast<uint16_t>(prog.size() / sizeof(sock_filter)), {}, area + 16};
    CKPT_TRY(write_remote(ctx.pid, area, &fprog, sizeof(fprog)));
    CKPT_TRY(write_remote(ctx.pid, area + 16, prog.data(), prog.size()));
    CKPT_TRY(rs.call("seccomp(SECCOMP_SET_MODE_FILTER)", SYS_seccomp,
                     {SECCOMP_SET_MODE_FILTER, (*it)->flags, area}));
  }
  return {};
}

Status install_all(RestoreContext& ctx, const Filters& filters, uint64_t area) {
  const auto& threads = ctx.rec->threads;
  for (size_t i = 0; i < threads.size(); ++i) {
    if (threads[i].seccomp_mode == 0) continue;
    if (i >= ctx.threads.size() || ctx.threads[i].tid != threads[i].tid)
      return errorf("seccomp: thread {} was not restored", threads[i].tid);
    auto& tracee = ctx.threads[i].tracee;
    CKPT_TRY(tracee.set_options(tracee.options() | PTRACE_O_SUSPEND_SECCOMP));
    Status st;
    if (i == 0) {
      st = install(ctx, *ctx.main_remote, threads[i], filters, area);
    } else {
      CKPT_TRY_ASSIGN(auto rs, ptrace::RemoteSyscalls::start(tracee, ctx.trampoline));
      st = install(ctx, rs, threads[i], filters, area);
    }
    if (!st.ok()) return st.error().wrap(fmt::format("thread {}", ctx.threads[i].tid));
  }
  return {};
}

}  // namespace

Status restore(RestoreContext& ctx) {
  const auto& threads = ctx.rec->threads;
  if (std::none_of(threads.begin(), threads.end(),
                   [](const schema::ThreadRecord& t) { return t.seccomp_mode != 0; }))
    return {};
  Filters filters;
  size_t largest = 0;
  for (auto& f : ctx.rec->seccomp_filters) {
    filters[f.id] = &f;
    largest = std::max(largest, f.prog.size());
  }
  // Programs go through memory of the process's own, mapped for the purpose (they can be larger
  // than the restorer page) wherever the kernel finds room among the restored mappings.
  uint64_t size = (16 + largest + kPage - 1) & ~(kPage - 1);
  auto& rs = *ctx.main_remote;
  CKPT_TRY_ASSIGN(long area, rs.call("mmap", SYS_mmap,
                                     {0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                      ~uint64_t{0}, 0}));
  CKPT_TRY(install_all(ctx, filters, static_cast<uint64_t>(area)));
  CKPT_TRY(rs.call("munmap", SYS_munmap, {static_cast<uint64_t>(area), size}));
  return {};
}

}  // namespace ckpt::seccomp
