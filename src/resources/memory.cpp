#include "resources/memory.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <thread>

#include "common/log.hpp"
#include "common/phase_clock.hpp"
#include "common/populate.hpp"
#include "common/scoped_fd.hpp"
#include "image/chain.hpp"
#include "proc/fdinfo.hpp"
#include "proc/page_scan.hpp"
#include "proc/pagemap.hpp"
#include "proc/proc_file.hpp"
#include "proc/status.hpp"
#include "resources/cow_shared.hpp"
#include "resources/deleted_files.hpp"
#include "resources/lazy_pages.hpp"
#include "resources/page_chain.hpp"
#include "resources/page_index.hpp"
#include "resources/page_populate.hpp"
#include "resources/pre_copied.hpp"
#include "resources/shared_memory.hpp"
#include "resources/sysv_ipc.hpp"
#include "resources/vdso.hpp"

namespace ckpt::memory {
namespace {

constexpr uint64_t kPage = 4096;
// One huge page: a fresh buffer of small pages costs first-touch faults, slow on this kind of VM
// (1 MiB: a few ms), and the kernel copies out of small pages slower too (common/populate.hpp).
constexpr size_t kFillBuffer = 2 << 20;
// Memory a snapshot dump reads while the process is stopped (shared, not forked) is held in
// ckpt's memory until the pages are written; beyond this the process is dumped stopped instead.
constexpr uint64_t kMaxStoppedBytes = 256ull << 20;

using schema::Content;
using Range = std::pair<uint64_t, uint64_t>;  // [start, end)

Content content_of(const proc::MapEntry& m) {
  if (sysv_ipc::is_attachment(m)) return Content::none;  // the segment is saved once, by itself
  switch (m.kind) {
    case proc::MapKind::vdso:
    case proc::MapKind::vvar:
    case proc::MapKind::vvar_vclock:
    case proc::MapKind::vsyscall:
      return Content::none;
    case proc::MapKind::file:
      if (m.deleted) return Content::all;
      return m.shared ? Content::none : Content::private_pages;
    default:
      return m.shared ? Content::all : Content::private_pages;
  }
}

using Piece = Plan::Piece;

// Reads the pages of `batch` that are not inherited, back to back into `buf`, in one call; false
// when the kernel would not give every byte that way (a PROT_NONE page, for one).
bool read_batch(pid_t pid, const std::vector<Piece>& batch, size_t bytes, std::span<char> buf) {
  std::vector<iovec> remote;
  for (auto& p : batch)
    if (!p.inherit) remote.push_back({reinterpret_cast<void*>(p.start), p.end - p.start});
  iovec local{buf.data(), bytes};
  return ::process_vm_readv(pid, &local, 1, remote.data(), remote.size(), 0) ==
         static_cast<ssize_t>(bytes);
}

// Takes the parent's entries for an inherited piece; a page the parent lacks is read after all.
Status inherit_piece(const proc::MemFile& mem, const Piece& p, page_index::PageSink& out) {
  for (uint64_t at = p.start; at < p.end;) {
    CKPT_TRY_ASSIGN(uint64_t stop, out.inherit(at, p.end));
    if (stop == p.end) break;
    std::array<char, kPage> page;
    CKPT_TRY(mem.read(stop, page.data(), kPage));
    CKPT_TRY(out.write(stop, page));
    at = stop + kPage;
  }
  return {};
}

// The copy buffer in slots: the dump reads into one while the pages of the others are still
// being hashed, checksummed and written (PageSink::write_behind). A slot is handed out again once
// its writes are done. With two slots the reader and the writer waited on each other whenever
// one piece took longer than the other; four keep both busy. All are backed at once, as far as
// they will be used (common/populate.hpp).
class CopyBuffers {
 public:
  explicit CopyBuffers(uint64_t to_read) : storage_(kSlots * kSlot) {
    for (size_t i = 0; i < kSlots && to_read > 0; ++i) {
      populate(storage_.data() + i * kSlot, std::min<uint64_t>(to_read, kSlot));
      to_read -= std::min<uint64_t>(to_read, kSlot);
    }
  }

  // The next slot, once free; `sink` is where its last bytes went.
  Result<std::span<char>> next(page_index::PageSink& sink) {
    cur_ = (cur_ + 1) % kSlots;
    CKPT_TRY(sink.settle(ticket_[cur_]));
    return std::span<char>(storage_.data() + cur_ * kSlot, kSlot);
  }

  // The slot last handed out is in use until `ticket` (0: nothing of it was queued).
  void used_until(uint64_t ticket) {
    if (ticket) ticket_[cur_] = ticket;
  }

  static constexpr size_t kSlots = 4;
  static constexpr size_t kSlot = size_t{4} << 20;

 private:
  HugeBuffer storage_;
  std::array<uint64_t, kSlots> ticket_{};
  size_t cur_ = 0;
};

// Streams the pieces into the pages section through the copy buffers. With `batch_reads` (the
// source is a snapshot), short pieces to read are read many at a time with process_vm_readv;
// long ones, and all of a process's own, through /proc/PID/mem. A pread of /proc/PID/mem costs
// tens of microseconds here whatever its size: for the scattered pages of an incremental dump,
// most of its time. But process_vm_readv pins what it reads, which gives a page shared
// copy-on-write a copy of its own (docs/engine.md, "memory::dump"): in a snapshot that costs a
// page copy; in the program it would unshare its memory with its children.
Status copy_pieces(const proc::MemFile& mem, const std::vector<Piece>& pieces,
                   page_index::PageSink& out, CopyBuffers& bufs, ByteProgress& progress,
                   bool batch_reads) {
  constexpr uint64_t kScattered = 64 << 10;
  constexpr size_t kMaxIov = 1024;
  std::vector<Piece> batch;
  size_t bytes = 0, reads = 0;
  auto flush = [&]() -> Status {
    if (batch.empty()) return {};
    CKPT_TRY_ASSIGN(std::span<char> buf, bufs.next(out));
    if (reads > 0 && !read_batch(mem.pid(), batch, bytes, buf)) {
      size_t at = 0;
      for (auto& p : batch) {
        if (p.inherit) continue;
        CKPT_TRY(mem.read(p.start, buf.data() + at, p.end - p.start));
        at += p.end - p.start;
      }
    }
    size_t at = 0;
    for (auto& p : batch) {
      if (p.inherit) {
        CKPT_TRY(inherit_piece(mem, p, out));
      } else {
        CKPT_TRY_ASSIGN(uint64_t ticket,
                        out.write_behind(p.start, buf.subspan(at, p.end - p.start)));
        bufs.used_until(ticket);
        at += p.end - p.start;
      }
      progress.advance(p.end - p.start);
    }
    batch.clear();
    bytes = reads = 0;
    return {};
  };
  for (const Piece& p : pieces) {
    uint64_t len = p.end - p.start;
    if (p.inherit || (batch_reads && len < kScattered)) {
      if (!p.inherit && (reads == kMaxIov || bytes + len > CopyBuffers::kSlot)) CKPT_TRY(flush());
      batch.push_back(p);
      if (!p.inherit) {
        bytes += len;
        ++reads;
      }
      continue;
    }
    CKPT_TRY(flush());
    for (uint64_t s = p.start; s < p.end;) {
      CKPT_TRY_ASSIGN(std::span<char> buf, bufs.next(out));
      size_t n = std::min<uint64_t>(p.end - s, buf.size());
      CKPT_TRY(mem.read(s, buf.data(), n));
      CKPT_TRY_ASSIGN(uint64_t ticket, out.write_behind(s, buf.first(n)));
      bufs.used_until(ticket);
      progress.advance(n);
      s += n;
    }
  }
  return flush();
}

// `ranges` cut into pieces by `unchanged` (both sorted): what an incremental dump with write
// tracking reads and what it inherits.
std::vector<Piece> cut(const std::vector<Range>& ranges,
                       const std::vector<proc::PageRange>& unchanged) {
  std::vector<Piece> out;
  size_t j = 0;
  for (auto [s, e] : ranges) {
    while (j < unchanged.size() && unchanged[j].end <= s) ++j;
    uint64_t pos = s;
    for (size_t k = j; k < unchanged.size() && unchanged[k].start < e; ++k) {
      uint64_t from = std::max(pos, unchanged[k].start), to = std::min(e, unchanged[k].end);
      if (from > pos) out.push_back({pos, from, false});
      out.push_back({from, to, true});
      pos = to;
    }
    if (pos < e) out.push_back({pos, e, false});
  }
  return out;
}

Status check_supported(const proc::MapEntry& m, pid_t pid) {
  if (m.vm_flags && (m.vm_flags->has(proc::VmFlag::io) || m.vm_flags->has(proc::VmFlag::pf)))
    return errorf("pid {}: mapping {:#x}-{:#x} ({}) is device memory, which cannot be saved", pid,
                  m.start, m.end, m.path);
  return {};
}

schema::Vma describe(const proc::MapEntry& m, Content content) {
  schema::Vma v;
  v.start = m.start, v.end = m.end, v.prot = m.prot, v.shared = m.shared, v.offset = m.offset;
  v.kind = std::string(proc::to_string(m.kind));
  v.path = m.path, v.deleted = m.deleted, v.content = content;
  if (sysv_ipc::is_attachment(m)) v.sysv_shm = static_cast<int32_t>(m.inode);  // inode: the id
  if (m.vm_flags)
    for (unsigned f = 0; f < static_cast<unsigned>(proc::VmFlag::count); ++f)
      if (m.vm_flags->has(static_cast<proc::VmFlag>(f)))
        v.vm_flags.emplace_back(proc::VmFlags::code(static_cast<proc::VmFlag>(f)));
  return v;
}

// The file by its path, when it is still the one mapped (same inode): what an unprivileged
// dumper has, since map_files needs CAP_CHECKPOINT_RESTORE in the initial user namespace.
Status stat_by_path(pid_t pid, const proc::MapEntry& m, struct stat& st) {
  if (::stat(m.path.c_str(), &st) < 0)
    return sys_error(fmt::format("pid {}: stat {}, mapped at {:#x}", pid, m.path, m.start));
  if (st.st_ino != m.inode)
    return errorf(
        "pid {}: {}, mapped at {:#x}, was replaced since it was mapped; without "
        "CAP_CHECKPOINT_RESTORE ckpt cannot reach the file that is mapped",
        pid, m.path, m.start);
  return {};
}

// A file mapped by the tree is looked at once per dump, however many times it is mapped: each
// stat through /proc/PID/map_files costs some 10 us, and a process maps each of its libraries
// four or five times (a 64-process tree: ~2000 stats of the same six files).
Status record_file_identity(DumpContext& ctx, const proc::MapEntry& m, schema::Vma& v) {
  TreeState::FileKey key{m.dev_major, m.dev_minor, m.inode};
  {
    std::lock_guard lock(ctx.tree->mu);
    if (auto it = ctx.tree->mapped_files.find(key); it != ctx.tree->mapped_files.end()) {
      v.file_size = it->second.first;
      v.file_mtime_ns = it->second.second;
      return {};
    }
  }
  struct stat st;
  std::string link = fmt::format("/proc/{}/map_files/{:x}-{:x}", ctx.pid, m.start, m.end);
  if (::stat(link.c_str(), &st) < 0) {
    if (errno != EPERM || m.deleted) return sys_error(fmt::format("stat {} ({})", link, m.path));
    CKPT_TRY(stat_by_path(ctx.pid, m, st));
  }
  auto size = static_cast<uint64_t>(st.st_size);
  int64_t mtime = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  v.file_size = size;
  v.file_mtime_ns = mtime;
  std::lock_guard lock(ctx.tree->mu);
  ctx.tree->mapped_files[key] = {size, mtime};
  return {};
}

// What the pages of a process will come to, before they are scanned: smaps counts them per
// mapping; without smaps (flags from the iterator) the process's anonymous pages stand for its
// private ones.
uint64_t expected_bytes(const DumpContext& ctx) {
  uint64_t total = 0;
  for (const auto& m : ctx.maps) {
    Content c = content_of(m);
    if (c == Content::private_pages) total += (m.rss_kb + m.swap_kb) << 10;
    if (c == Content::all && !shared_memory::is_object(m)) total += m.size();
  }
  if (ctx.flags_fast)
    if (auto st = proc::read_status(ctx.pid); st.ok())
      total += (st->rss_anon_kb + st->vm_swap_kb) << 10;
  return total;
}

}  // namespace

// A deleted file mapped shared that is not mapped again from its inode (too large) is saved by
// its contents, once per process: two processes sharing it would come back with a copy each and
// no longer see each other's writes.
Status check_not_shared_between(const std::vector<DumpContext*>& procs) {
  std::map<std::pair<uint64_t, uint64_t>, std::pair<pid_t, uint64_t>>
      seen;  // (dev, ino) -> pid, addr
  for (auto* ctx : procs) {
    const auto& vmas = ctx->rec.memory.vmas;
    for (size_t i = 0; i < ctx->maps.size(); ++i) {
      const auto& m = ctx->maps[i];
      if (!m.shared || m.inode == 0 || content_of(m) != Content::all || shared_memory::is_object(m))
        continue;
      if (i < vmas.size() && vmas[i].deleted_file) continue;
      auto key = std::make_pair(uint64_t{m.dev_major} << 32 | m.dev_minor, m.inode);
      auto [it, added] = seen.emplace(key, std::make_pair(ctx->pid, m.start));
      if (!added && it->second.first != ctx->pid)
        return errorf(
            "pid {}: shared memory at {:#x} ({}) is shared with pid {} (at {:#x}), which ckpt "
            "cannot save yet",
            ctx->pid, m.start, m.path.empty() ? "anonymous" : m.path, it->second.first,
            it->second.second);
    }
  }
  return {};
}

namespace {

// Whether fork() gives the snapshot this mapping's private pages as they are now: it leaves out
// MADV_DONTFORK areas and gives MADV_WIPEONFORK ones zeroed.
bool forked_as_is(const proc::MapEntry& m) {
  return !m.vm_flags->has(proc::VmFlag::dc) && !m.vm_flags->has(proc::VmFlag::wf);
}

// The pages of an item's private mapping worth saving: in anonymous memory every populated page
// (the zero page aside) is the process's own.
proc::PageFilter filter_of(const Plan::Item& item) {
  return item.file ? proc::PageFilter::private_anon : proc::PageFilter::populated;
}

// Reads the planned ranges that the snapshot will not have, while the process is still stopped.
Status read_stopped(pid_t pid, Plan& plan) {
  std::optional<proc::MemFile> mem;
  for (auto& item : plan.items) {
    if (item.scan) continue;
    uint64_t size = 0;
    for (auto [s, e] : item.ranges) size += e - s;
    item.data.resize(size);
    char* at = item.data.data();
    for (auto [s, e] : item.ranges) {
      if (!mem) {
        CKPT_TRY_ASSIGN(mem, proc::MemFile::open(pid));
      }
      CKPT_TRY(mem->read(s, at, e - s));
      at += e - s;
    }
  }
  return {};
}

// The bytes of an item read while the process was stopped, its ranges (or its pieces to read)
// back to back; held pieces known unchanged take the parent's entries, or with a pre-copy its
// copies.
Status write_held(const Plan::Item& item, page_index::PageSink& sink, const PreCopied* pre) {
  size_t at = 0;
  if (item.held) {
    for (auto& p : item.pieces) {
      if (p.inherit && pre) {
        CKPT_TRY(pre->write(p.start, p.end, sink));
        continue;
      }
      if (p.inherit) {
        CKPT_TRY_ASSIGN(uint64_t stop, sink.inherit(p.start, p.end));
        if (stop != p.end) return errorf("page index: the parent lost page {:#x}", stop);
        continue;
      }
      CKPT_TRY(sink.write(p.start, item.held_bytes.subspan(at, p.end - p.start)));
      at += p.end - p.start;
    }
    return {};
  }
  for (auto [s, e] : item.ranges) {
    CKPT_TRY(sink.write(s, std::span(item.data).subspan(at, e - s)));
    at += e - s;
  }
  return {};
}

// A deleted file (not shared memory) is mapped again from its recreated inode, so that processes
// sharing it share it again and a private mapping still reads the file where it has no pages of
// its own.
Result<std::optional<int32_t>> deleted_file_of(DumpContext& ctx, const proc::MapEntry& m) {
  if (m.kind != proc::MapKind::file || !m.deleted || m.inode == 0 || shared_memory::is_object(m) ||
      sysv_ipc::is_attachment(m))
    return std::optional<int32_t>();
  return deleted_files::save_mapping(ctx, m);
}

bool registered_with_userfaultfd(const proc::VmFlags& f) {
  return f.has(proc::VmFlag::um) || f.has(proc::VmFlag::uw) || f.has(proc::VmFlag::ui);
}

// Why no snapshot can be taken of memory registered with a userfaultfd that is not this dump's
// write tracking (a `ckpt run` supervisor's, say), or nullopt when one can. A fork leaves such a
// registration out of the child, whose pages read as the process's, unless the userfaultfd asked
// for fork events: its monitor would be told of the snapshot, and the fork would wait for its
// answer (for ever, were the monitor in the frozen tree). Such a userfaultfd must be open in some
// process, since closing the last descriptor unregisters it. Missing- and minor-fault
// registrations stay refused: a page their monitor has not filled reads as zero in a snapshot.
std::optional<std::string> no_snapshot_for_userfaultfd(DumpContext& ctx,
                                                       const proc::VmFlags& flags) {
  if (flags.has(proc::VmFlag::um) || flags.has(proc::VmFlag::ui))
    return "memory registered with a userfaultfd for missing or minor faults";
  std::lock_guard lock(ctx.tree->mu);
  if (!ctx.tree->uffd_fork_events) {
    auto found = proc::some_userfaultfd_has(UFFD_FEATURE_EVENT_FORK);
    if (!found)
      log::warn("memory", "cannot tell whether a userfaultfd sends fork events: {}",
                found.error().message);
    ctx.tree->uffd_fork_events = !found || *found;
  }
  if (*ctx.tree->uffd_fork_events)
    return "memory registered with a userfaultfd, and one on this machine sends fork events";
  return std::nullopt;
}

}  // namespace

Result<Plan> prepare(DumpContext& ctx, bool snapshot) {
  schema::MemoryRecord& out = ctx.rec.memory;
  out = {};
  ctx.tree->progress->expect(expected_bytes(ctx));
  Plan plan;
  plan.snapshot = snapshot;
  auto refuse = [&](std::string_view why) {
    if (plan.snapshot)
      log::warn("memory", "pid {}: no snapshot ({}); copying its memory stopped", ctx.pid, why);
    plan.snapshot = false;
  };
  std::optional<proc::Pagemap> pagemap;
  std::vector<std::pair<const proc::MapEntry*, size_t>> shm_maps;  // with their index in vmas
  for (const auto& m : ctx.maps) {
    Content content = content_of(m);
    CKPT_TRY_ASSIGN(auto deleted_file, deleted_file_of(ctx, m));
    if (deleted_file) content = m.shared ? Content::none : Content::private_pages;
    if (content != Content::none) CKPT_TRY(check_supported(m, ctx.pid));
    // Without VmFlags nothing tells which areas fork() leaves out.
    if (!m.vm_flags) refuse("smaps has no VmFlags");
    // ckpt's own write tracking asks for no fork events.
    bool own_wp = ctx.write_tracked && m.vm_flags && !m.vm_flags->has(proc::VmFlag::um) &&
                  !m.vm_flags->has(proc::VmFlag::ui);
    if (m.vm_flags && !own_wp && registered_with_userfaultfd(*m.vm_flags))
      if (auto why = no_snapshot_for_userfaultfd(ctx, *m.vm_flags)) refuse(*why);
    schema::Vma v = describe(m, content);
    v.deleted_file = deleted_file;
    Plan::Item item;
    item.vma = out.vmas.size();
    item.start = m.start;
    item.end = m.end;
    item.file = m.kind == proc::MapKind::file;
    if (shared_memory::is_object(m)) {
      shm_maps.emplace_back(&m, out.vmas.size());  // saved in sections of their own
    } else if (content == Content::private_pages && (!snapshot || forked_as_is(m))) {
      item.scan = true;
    } else if (content == Content::private_pages) {
      if (!pagemap) {
        CKPT_TRY_ASSIGN(pagemap, proc::Pagemap::open(ctx.pid));
      }
      CKPT_TRY_ASSIGN(auto found, pagemap->scan(m.start, m.end, filter_of(item)));
      for (auto& r : found) item.ranges.emplace_back(r.start, r.end);
    } else if (content == Content::all) {
      item.ranges.emplace_back(m.start, m.end);
    }
    if (m.kind == proc::MapKind::file && !m.deleted && !v.sysv_shm)
      CKPT_TRY(record_file_identity(ctx, m, v));
    for (auto [s, e] : item.ranges) plan.stopped_bytes += e - s;
    if (item.scan || !item.ranges.empty()) plan.items.push_back(std::move(item));
    out.vmas.push_back(std::move(v));
  }
  for (auto [m, index] : shm_maps) CKPT_TRY(shared_memory::save(ctx, *m, out.vmas[index]));
  if (plan.stopped_bytes > kMaxStoppedBytes)
    refuse(fmt::format("{} bytes of shared or not-forked memory", plan.stopped_bytes));
  if (plan.snapshot) CKPT_TRY(read_stopped(ctx.pid, plan));
  return plan;
}

namespace {

// [s, e) ranges of `from` without those of `minus` (both sorted, not overlapping).
std::vector<Range> subtract(const std::vector<Range>& from, const std::vector<Range>& minus) {
  if (minus.empty()) return from;
  std::vector<Range> out;
  size_t j = 0;
  for (auto [s, e] : from) {
    while (j < minus.size() && minus[j].second <= s) ++j;
    for (size_t k = j; k < minus.size() && minus[k].first < e; ++k) {
      if (minus[k].first > s) out.emplace_back(s, minus[k].first);
      s = std::max(s, minus[k].second);
    }
    if (s < e) out.emplace_back(s, e);
  }
  return out;
}

// The root's mapping that holds a child's `v` as fork() left it, if both can share pages.
const schema::Vma* root_holding(const DumpContext& root, const schema::Vma& v) {
  if (!cow_shared::shareable(v)) return nullptr;
  for (auto& w : root.rec.memory.vmas)
    if (cow_shared::holds(w, v) && cow_shared::shareable(w)) return &w;
  return nullptr;
}

}  // namespace

Status leave_out_shared_with_root(const DumpContext& root, pid_t root_source, DumpContext& child,
                                  pid_t child_source, Plan& plan) {
  if (root.zombie || child.zombie) return {};
  // An incremental generation stores, per process, what changed against its parent.
  if (root.tree->pages && root.tree->pages->parent) return {};
  CKPT_TRY_ASSIGN(proc::Pagemap root_map, proc::Pagemap::open(root_source));
  CKPT_TRY_ASSIGN(proc::Pagemap map, proc::Pagemap::open(child_source));
  for (auto& item : plan.items) {
    if (!item.scan || !root_holding(root, child.rec.memory.vmas[item.vma])) continue;
    CKPT_TRY_ASSIGN(auto same, map.same_pages(root_map, item.start, item.end));
    for (auto& r : same) item.from_root.emplace_back(r.start, r.end);
  }
  return {};
}

namespace {

// The parent's index of ctx's process in an incremental dump, or null.
const page_index::Index* parent_index(const DumpContext& ctx) {
  const auto* pages = ctx.tree->pages;
  if (!pages || !pages->parent) return nullptr;
  auto it = pages->parent->indexes.find(ctx.section_prefix);
  return it == pages->parent->indexes.end() ? nullptr : &it->second;
}

// Whether ctx's process ends a run of kMaxDeltas indexes of changes: its index is written whole.
bool index_written_whole(const DumpContext& ctx) {
  const auto* pages = ctx.tree->pages;
  return pages && pages->parent && pages->parent->next_whole(ctx.section_prefix);
}

}  // namespace

std::vector<Piece> only_what_parent_has(const std::vector<Piece>& pieces,
                                        const page_index::Index& parent) {
  std::vector<Piece> out;
  size_t k = 0;
  const auto& all = parent.entries;
  auto add = [&](uint64_t s, uint64_t e, bool inherit) {
    if (!out.empty() && out.back().end == s && out.back().inherit == inherit) {
      out.back().end = e;
    } else {
      out.push_back({s, e, inherit});
    }
  };
  for (const Piece& p : pieces) {
    if (!p.inherit) {
      add(p.start, p.end, false);
      continue;
    }
    // Mostly the parent has every page of the piece: its entries there are then exactly as many
    // as the pages (they ascend strictly), found without a walk page by page (1 GiB of pages took
    // 2-4 ms of the freeze here).
    k = parent.first_at_or_above(p.start, k);
    size_t past = parent.first_at_or_above(p.end, k);
    if (past - k == (p.end - p.start) / kPage) {
      add(p.start, p.end, true);
      k = past;
      continue;
    }
    for (uint64_t a = p.start; a < p.end; a += kPage) {
      while (k < all.size() && all[k].addr() < a) ++k;
      add(a, a + kPage, k < all.size() && all[k].addr() == a);
    }
  }
  return out;
}

namespace {

// Reads the pieces to read of `pieces` from process `pid`, back to back into `out`. These are
// mostly pages written since the last dump, so the program's own (the write gave it a copy):
// pinning them (process_vm_readv) unshares next to nothing.
Status read_pieces(pid_t pid, const std::vector<Piece>& pieces, char* out) {
  constexpr size_t kMaxIov = 1024;
  std::vector<iovec> local, remote;
  auto flush = [&]() -> Status {
    size_t want = 0;
    for (auto& l : local) want += l.iov_len;
    ssize_t n =
        ::process_vm_readv(pid, local.data(), local.size(), remote.data(), remote.size(), 0);
    if (n != static_cast<ssize_t>(want)) {
      CKPT_TRY_ASSIGN(proc::MemFile mem, proc::MemFile::open(pid));
      for (size_t i = 0; i < local.size(); ++i)
        CKPT_TRY(mem.read(reinterpret_cast<uint64_t>(remote[i].iov_base), local[i].iov_base,
                          local[i].iov_len));
    }
    local.clear();
    remote.clear();
    return {};
  };
  for (auto& p : pieces) {
    if (p.inherit) continue;
    local.push_back({out, p.end - p.start});
    remote.push_back({reinterpret_cast<void*>(p.start), p.end - p.start});
    out += p.end - p.start;
    if (local.size() == kMaxIov) CKPT_TRY(flush());
  }
  return local.empty() ? Status{} : flush();
}

// The pages of an item to save: those write tracking found as it renewed its protection
// (write_tracking::renew, the same freeze) when it covers the item, else the pagemap's.
Result<std::vector<proc::PageRange>> pages_of(const DumpContext& ctx, proc::Pagemap& pagemap,
                                              const Plan::Item& item) {
  const auto& known = ctx.own_pages;
  proc::RangeSet span{{item.start, item.end}};
  if (known.tracked.empty() || !proc::range_subtract(span, known.tracked).empty())
    return pagemap.scan(item.start, item.end, filter_of(item));
  std::vector<proc::PageRange> out;
  auto r = std::lower_bound(known.own.begin(), known.own.end(), item.start,
                            [](const proc::PageRange& p, uint64_t at) { return p.end <= at; });
  for (; r != known.own.end() && r->start < item.end; ++r)
    out.push_back({std::max(r->start, item.start), std::min(r->end, item.end)});
  return out;
}

// `bytes` of the room backed before the freeze, or an empty span when it has not that much left.
std::span<char> held_room(const DumpContext& ctx, uint64_t bytes) {
  auto* pages = ctx.tree->pages;
  return pages && pages->held_room ? pages->held_room->take(bytes) : std::span<char>();
}

}  // namespace

Result<bool> hold_changed(DumpContext& ctx, Plan& plan) {
  // Read now, the pages cost what a fork() of the process would (its page tables: ~24 ms per GiB
  // here) at about 1/32 of its memory (kMaxHeld).
  const page_index::Index* parent = parent_index(ctx);
  if ((!parent && !ctx.pre_copied) || ctx.unchanged.empty()) return false;
  PhaseClock clock("memory", fmt::format("pid {}: written pages", ctx.pid));
  CKPT_TRY_ASSIGN(proc::Pagemap pagemap, proc::Pagemap::open(ctx.pid));
  std::vector<std::vector<Range>> found(plan.items.size());
  std::vector<std::vector<Piece>> pieces(plan.items.size());
  uint64_t total = 0, to_read = 0, in_room = 0;
  for (size_t i = 0; i < plan.items.size(); ++i) {
    const Plan::Item& item = plan.items[i];
    if (!item.scan) continue;
    CKPT_TRY_ASSIGN(auto ranges, pages_of(ctx, pagemap, item));
    for (auto& r : ranges) found[i].emplace_back(r.start, r.end);
    // Left out, the root saves them (leave_out_shared_with_root, at the freeze of a pre-copy).
    found[i] = subtract(found[i], item.from_root);
    // ctx.unchanged holds only pages the pre-copy has.
    pieces[i] = parent ? only_what_parent_has(cut(found[i], ctx.unchanged), *parent)
                       : cut(found[i], ctx.unchanged);
    for (auto& p : pieces[i]) {
      total += p.end - p.start;
      to_read += p.inherit ? 0 : p.end - p.start;
    }
    if (to_read > kMaxHeld) return false;
  }
  // A few pages cost less than any fork, however small the process.
  constexpr uint64_t kAlwaysHeld = 256 << 10;
  if (to_read > kAlwaysHeld && to_read * 32 > total) return false;
  clock.mark("found");
  for (size_t i = 0; i < plan.items.size(); ++i) {
    Plan::Item& item = plan.items[i];
    if (!item.scan) continue;
    uint64_t bytes = 0;
    for (auto& p : pieces[i]) bytes += p.inherit ? 0 : p.end - p.start;
    std::span<char> room = held_room(ctx, bytes);
    if (room.size() < bytes) {
      reserve_populated(item.data, bytes);
      item.data.resize(bytes);
      room = std::span(item.data);
    } else {
      in_room += bytes;
    }
    CKPT_TRY(read_pieces(ctx.pid, pieces[i], room.data()));
    item.held_bytes = room;
    item.ranges = std::move(found[i]);
    item.pieces = std::move(pieces[i]);
    item.scan = false;
    item.held = true;
  }
  clock.mark("backed and read");
  plan.snapshot = false;
  {
    std::lock_guard lk(ctx.tree->mu);  // processes are held several at once
    ctx.tree->pages->held += to_read;
  }
  log::info("memory",
            "pid {}: {} bytes written since the {} read while stopped ({} into memory backed "
            "before), no snapshot",
            ctx.pid, to_read, parent ? "parent" : "pre-copy", in_room);
  return true;
}

namespace {

// The pages each item saves, found in the source's pagemap where the plan says so; the pages the
// root saves left out. Returns their number.
Result<uint64_t> find_pages(DumpContext& ctx, Plan& plan, proc::Pagemap& pagemap) {
  uint64_t pages = 0, as_roots = 0;
  schema::MemoryRecord& out = ctx.rec.memory;
  for (auto& item : plan.items) {
    if (item.scan) {
      CKPT_TRY_ASSIGN(auto found, pagemap.scan(item.start, item.end, filter_of(item)));
      for (auto& r : found) item.ranges.emplace_back(r.start, r.end);
    }
    schema::Vma& v = out.vmas[item.vma];
    // Left out here, saved by the root (leave_out_shared_with_root).
    item.ranges = subtract(item.ranges, item.from_root);
    for (auto [s, e] : item.from_root) {
      v.from_root.push_back({s, e});
      as_roots += e - s;
    }
    for (auto [s, e] : item.ranges) {
      out.page_bytes += e - s;
      v.pages.push_back({s, e});
      pages += (e - s) / kPage;
    }
  }
  if (as_roots > 0)
    log::info("memory", "pid {}: {} bytes shared with the root since fork, saved once", ctx.pid,
              as_roots);
  return pages;
}

}  // namespace

Status write_pages(DumpContext& ctx, Plan& plan, pid_t source) {
  PhaseClock clock("memory", fmt::format("pid {}: pages", ctx.pid));
  CKPT_TRY_ASSIGN(proc::Pagemap pagemap, proc::Pagemap::open(source));
  CKPT_TRY_ASSIGN(uint64_t count, find_pages(ctx, plan, pagemap));
  clock.mark("found");
  CKPT_TRY_ASSIGN(image::SectionWriter * pages,
                  ctx.writer->begin_section(ctx.section(kPagesSection)));
  page_index::DumpState own;
  page_index::DumpState& state = ctx.tree->pages ? *ctx.tree->pages : own;
  const page_index::Index* parent = parent_index(ctx);
  // Write tracking speaks of the process's own pages, which its snapshot shares.
  const std::vector<proc::PageRange> no_pages;
  const auto& unchanged = parent ? ctx.unchanged : no_pages;
  // Fresh memory is slow to touch here (common/populate.hpp): the buffers and the index are
  // backed at once, the buffers only as far as they will be used (a small process uses a few
  // pages). The sink comes after the buffers: its end waits for its writes before they go.
  uint64_t to_read = count * kPage - std::min(count * kPage, proc::range_bytes(unchanged));
  uint64_t from_source = 0;  // pages read or held while stopped need no copy buffer
  for (auto& item : plan.items)
    if (!item.held && item.data.empty())
      for (auto [s, e] : item.ranges) from_source += e - s;
  CopyBuffers bufs(std::min(to_read, from_source));
  clock.mark("copy buffers backed");
  page_index::PageSink sink(*pages, parent, state);
  sink.reserve(count);
  clock.mark("index room backed");
  std::optional<proc::MemFile> mem;  // of the process the last ranges came from
  for (auto& item : plan.items) {
    if (!item.held && item.data.empty()) {
      // Ranges not read while stopped come from the source (the snapshot, or the process itself).
      pid_t from = item.scan ? source : ctx.pid;
      if (!mem || mem->pid() != from) {
        CKPT_TRY_ASSIGN(mem, proc::MemFile::open(from));
      }
      CKPT_TRY(copy_pieces(*mem, cut(item.ranges, unchanged), sink, bufs, *ctx.tree->progress,
                           from != ctx.pid));
    } else {
      CKPT_TRY(write_held(item, sink, ctx.pre_copied));
      uint64_t bytes = item.held ? item.held_bytes.size() : item.data.size();
      if (item.held)
        for (auto& p : item.pieces) bytes += p.inherit ? p.end - p.start : 0;
      ctx.tree->progress->advance(bytes);
      HugeVector<char>().swap(item.data);
    }
  }
  CKPT_TRY(sink.settle_all());
  clock.mark("copied");
  CKPT_TRY(pages->finish());
  CKPT_TRY(page_index::write(*ctx.writer, ctx.section(page_index::kIndexSection), sink.take(),
                             index_written_whole(ctx)));
  clock.mark("index written");
  return {};
}

Status dump(DumpContext& ctx) {
  CKPT_TRY_ASSIGN(Plan plan, prepare(ctx, false));
  return write_pages(ctx, plan, ctx.pid);
}

std::string mapping_fd_key(const std::string& path, bool writable) {
  return (writable ? "rw:" : "ro:") + path;
}

std::vector<MappedFile> files_to_map(const schema::ProcessRecord& proc) {
  std::vector<MappedFile> out;
  for (auto& v : proc.memory.vmas) {
    if (v.kind != "file" || v.deleted || v.shm || v.sysv_shm) continue;
    MappedFile f{v.path, v.shared && (v.prot & PROT_WRITE) != 0, v.file_size.value_or(0),
                 v.file_mtime_ns.value_or(0)};
    bool seen = std::any_of(out.begin(), out.end(), [&](const MappedFile& o) {
      return o.path == f.path && o.writable == f.writable;
    });
    if (!seen) out.push_back(f);
  }
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> used_ranges(const schema::ProcessRecord& proc) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (auto& v : proc.memory.vmas) out.emplace_back(v.start, v.end);
  return out;
}

namespace {

constexpr std::array<proc::MapKind, 3> kVdsoKinds = {
    proc::MapKind::vvar, proc::MapKind::vvar_vclock, proc::MapKind::vdso};

bool is_vdso_kind(proc::MapKind k) {
  return std::find(kVdsoKinds.begin(), kVdsoKinds.end(), k) != kVdsoKinds.end();
}

// The base's area that `v` keeps (cow_shared.hpp), if any.
const cow_shared::Area* kept_area(const RestoreContext& ctx, const schema::Vma& v) {
  return ctx.base ? ctx.base->find(v) : nullptr;
}

// The mappings the process keeps from the base, sorted. Looked up once per process: each lookup
// compares the mapping with every area of the base.
std::vector<Range> kept_ranges(const RestoreContext& ctx) {
  std::vector<Range> kept;
  for (auto& v : ctx.rec->memory.vmas)
    if (kept_area(ctx, v)) kept.emplace_back(v.start, v.end);
  std::sort(kept.begin(), kept.end());
  return kept;
}

// What of [start, end) is not inside one of the sorted `kept` ranges.
std::vector<Range> outside_kept(const std::vector<Range>& kept, uint64_t start, uint64_t end) {
  std::vector<Range> out;
  for (auto [s, e] : kept) {
    if (e <= start || s >= end) continue;
    if (s > start) out.emplace_back(start, s);
    start = std::max(start, e);
  }
  if (start < end) out.emplace_back(start, end);
  return out;
}

// Whether any of the sorted `keep` ranges meets [start, end).
bool meets_any(const std::vector<Range>& keep, uint64_t start, uint64_t end) {
  auto it = std::lower_bound(keep.begin(), keep.end(), Range{start, 0},
                             [](const Range& a, const Range& b) { return a.second <= b.first; });
  return it != keep.end() && it->first < end;
}

// Everything of the puppet's own memory goes but the trampoline, the vdso and the areas kept from
// the base. Neighbouring stretches go in one munmap (holes between them are no matter to it):
// each injected call costs two ptrace stops, and a puppet has the restorer's fifty-odd mappings.
Status unmap_puppet(RestoreContext& ctx, const std::vector<proc::MapEntry>& own) {
  const std::vector<Range> kept = kept_ranges(ctx);
  std::vector<Range> keep = kept, drop;
  for (auto& m : own) {
    if (m.start == ctx.trampoline || is_vdso_kind(m.kind) || m.kind == proc::MapKind::vsyscall) {
      keep.emplace_back(m.start, m.end);
      continue;
    }
    for (auto r : outside_kept(kept, m.start, m.end)) drop.push_back(r);
  }
  std::sort(keep.begin(), keep.end());
  std::sort(drop.begin(), drop.end());
  std::vector<Range> merged;
  for (auto r : drop) {
    if (!merged.empty() && !meets_any(keep, merged.back().second, r.first))
      merged.back().second = std::max(merged.back().second, r.second);
    else
      merged.push_back(r);
  }
  std::vector<ptrace::BatchCall> calls;
  for (auto [s, e] : merged) calls.push_back({"munmap", SYS_munmap, {s, e - s}});
  return run_batch(ctx, calls);
}

// A free stretch of `size` bytes that no image mapping, the trampoline or the puppet's vdso uses.
uint64_t find_gap(const RestoreContext& ctx, const std::vector<proc::MapEntry>& own,
                  uint64_t size) {
  auto used = used_ranges(*ctx.rec);
  used.emplace_back(ctx.trampoline, ctx.trampoline + kPage);
  for (auto& m : own) used.emplace_back(m.start, m.end);
  std::sort(used.begin(), used.end());
  uint64_t candidate = 0x100000000;  // 4 GiB: clear of low fixed-address executables
  for (auto& [s, e] : used) {
    if (e <= candidate) continue;
    if (s >= candidate + size) break;
    candidate = (e + kPage - 1) & ~(kPage - 1);
  }
  return candidate;
}

// The kernel's vdso code finds its data pages at fixed offsets before it, so [vvar],
// [vvar_vclock] and [vdso] move together, keeping their distances, to where the image had them.
Status move_vdso(RestoreContext& ctx, const std::vector<proc::MapEntry>& own) {
  std::map<proc::MapKind, const proc::MapEntry*> have;
  for (auto& m : own)
    if (is_vdso_kind(m.kind)) have[m.kind] = &m;
  std::map<proc::MapKind, std::pair<uint64_t, uint64_t>> want;
  for (auto& v : ctx.rec->memory.vmas) {
    for (auto k : kVdsoKinds)
      if (v.kind == proc::to_string(k)) want[k] = {v.start, v.end};
  }
  std::vector<ptrace::BatchCall> calls;
  uint64_t total = 0;
  for (auto& [k, m] : have) {
    auto it = want.find(k);
    if (it == want.end()) {
      calls.push_back({"munmap", SYS_munmap, {m->start, m->size()}});
      continue;
    }
    if (it->second.second - it->second.first != m->size())
      return errorf("restore pid {}: {} is {} bytes here but {} in the image (another kernel?)",
                    ctx.pid, proc::to_string(k), m->size(), it->second.second - it->second.first);
    total += m->size();
  }
  for (auto& [k, w] : want)
    if (!have.count(k))
      return errorf("restore pid {}: this kernel has no {} to put at {:#x}", ctx.pid,
                    proc::to_string(k), w.first);
  // Through a free area first: the old and new places may overlap.
  uint64_t tmp = find_gap(ctx, own, total);
  std::vector<std::pair<proc::MapKind, uint64_t>> parked;
  for (auto& [k, m] : have) {
    if (!want.count(k)) continue;
    calls.push_back({"mremap",
                     SYS_mremap,
                     {m->start, m->size(), m->size(), MREMAP_MAYMOVE | MREMAP_FIXED, tmp}});
    parked.emplace_back(k, tmp);
    tmp += m->size();
  }
  for (auto& [k, at] : parked) {
    uint64_t size = want[k].second - want[k].first;
    calls.push_back(
        {"mremap", SYS_mremap, {at, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, want[k].first}});
  }
  return run_batch(ctx, calls);
}

// The running kernel's vdso data and code (as the puppet has them) moved together to a free
// area; returns where its [vdso] now starts.
Result<uint64_t> move_vdso_aside(RestoreContext& ctx, const std::vector<proc::MapEntry>& own) {
  std::vector<const proc::MapEntry*> parts;
  for (auto& m : own)
    if (is_vdso_kind(m.kind)) parts.push_back(&m);
  if (parts.empty()) return errorf("restore pid {}: this kernel gives it no vdso", ctx.pid);
  uint64_t first = parts.front()->start, last = parts.back()->end;
  uint64_t to = find_gap(ctx, own, last - first);
  // A free stretch above everything it overlaps, so the moves never land on each other.
  std::optional<uint64_t> code;
  for (auto* m : parts) {
    uint64_t dest = to + (m->start - first);
    CKPT_TRY(ctx.main_remote->call(
        "mremap", SYS_mremap,
        {m->start, m->size(), m->size(), MREMAP_MAYMOVE | MREMAP_FIXED, dest}));
    if (m->kind == proc::MapKind::vdso) code = dest;
  }
  if (!code) return errorf("restore pid {}: this kernel's vdso has no code mapping", ctx.pid);
  return *code;
}

// The old vdso's address gets the old vdso's code with every function jumping to the new one.
Status proxy_vdso(RestoreContext& ctx, const std::vector<proc::MapEntry>& own) {
  const schema::Vma* old = nullptr;
  for (auto& v : ctx.rec->memory.vmas)
    if (v.kind == proc::to_string(proc::MapKind::vdso)) old = &v;
  CKPT_TRY_ASSIGN(uint64_t new_base, move_vdso_aside(ctx, own));
  if (!old) return {};  // the process had no vdso (a static program that unmapped it)
  const auto& old_image = ctx.image->vdso.image;
  if (old_image.empty() || old_image.size() != old->end - old->start)
    return errorf("restore pid {}: the image does not hold its vdso, which a proxy needs", ctx.pid);
  const proc::MapEntry* mine = nullptr;
  for (auto& m : own)
    if (m.kind == proc::MapKind::vdso) mine = &m;
  if (!mine) return errorf("restore pid {}: this kernel gives it no vdso", ctx.pid);
  std::span<const uint8_t> new_image(reinterpret_cast<const uint8_t*>(mine->start), mine->size());
  std::vector<std::string> missing;
  CKPT_TRY_ASSIGN(auto proxy, vdso::make_proxy(old_image, new_image, new_base, &missing));
  for (auto& name : missing)
    log::warn("memory", "pid {}: this kernel's vdso has no {}; the old code stays", ctx.pid, name);
  uint64_t len = old->end - old->start;
  auto& rs = *ctx.main_remote;
  CKPT_TRY(rs.call("mmap", SYS_mmap,
                   {old->start, len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, ~uint64_t{0}, 0}));
  CKPT_TRY(write_remote(ctx.pid, old->start, proxy.data(), proxy.size()));
  CKPT_TRY(rs.call("mprotect", SYS_mprotect, {old->start, len, PROT_READ | PROT_EXEC}));
  return {};
}

int initial_prot(const schema::Vma& v) {
  int prot = v.prot;
  if (!v.pages.empty() || !v.from_root.empty()) prot |= PROT_READ | PROT_WRITE;
  return prot;
}

Result<int> mapping_fd(const RestoreContext& ctx, const schema::Vma& v) {
  if (v.shm) {
    auto it = ctx.mapping_fds.find(shared_memory::handed_key(*v.shm));
    if (it == ctx.mapping_fds.end())
      return errorf("restore pid {}: shared memory {} was not recreated", ctx.pid, *v.shm);
    return it->second;
  }
  if (v.deleted_file) {
    auto it = ctx.mapping_fds.find(deleted_files::handed_key(*v.deleted_file));
    if (it == ctx.mapping_fds.end())
      return errorf("restore pid {}: deleted file {} was not recreated", ctx.pid, v.path);
    return it->second;
  }
  bool writable = v.shared && (v.prot & PROT_WRITE);
  auto it = ctx.mapping_fds.find(mapping_fd_key(v.path, writable));
  if (it == ctx.mapping_fds.end())
    return errorf("restore pid {}: no descriptor for mapped file {}", ctx.pid, v.path);
  return it->second;
}

bool is_mapped(const schema::Vma& v) {
  return v.content != Content::none || v.kind == "file";
}

// Advice that must be given before the pages are populated, so that huge pages are used where
// they were.
void advise_early(const schema::Vma& v, std::vector<ptrace::BatchCall>& calls) {
  uint64_t start = v.start, len = v.end - v.start;
  if (v.has_flag("hg")) calls.push_back({"madvise", SYS_madvise, {start, len, MADV_HUGEPAGE}});
  if (v.has_flag("nh")) calls.push_back({"madvise", SYS_madvise, {start, len, MADV_NOHUGEPAGE}});
}

// The calls that map `v` as the image has it (with its early advice).
Status plan_map(const RestoreContext& ctx, const schema::Vma& v,
                std::vector<ptrace::BatchCall>& calls) {
  if (kept_area(ctx, v)) {  // protected by the puppet itself
    advise_early(v, calls);
    return {};
  }
  bool from_file = (v.kind == "file" && (!v.deleted || v.deleted_file)) || v.shm;
  uint64_t flags = MAP_FIXED | (v.shared ? MAP_SHARED : MAP_PRIVATE);
  if (v.has_flag("gd")) flags |= MAP_GROWSDOWN;
  // Reservations made with MAP_NORESERVE (sanitizer shadows, JIT heaps) can be far larger than
  // memory; without the flag the kernel's overcommit check refuses them.
  if (v.has_flag("nr")) flags |= MAP_NORESERVE;
  int64_t fd = -1;
  if (from_file) {
    CKPT_TRY_ASSIGN(fd, mapping_fd(ctx, v));
  } else {
    flags |= MAP_ANONYMOUS;
  }
  if (v.end <= v.start || (v.start | v.end) % kPage != 0)
    return errorf("restore pid {}: mapping {:#x}-{:#x} in the image is not page-aligned", ctx.pid,
                  v.start, v.end);
  uint64_t prot = static_cast<uint64_t>(initial_prot(v));
  uint64_t offset = from_file ? v.offset : 0;
  calls.push_back({"mmap",
                   SYS_mmap,
                   {v.start, v.end - v.start, prot, flags, static_cast<uint64_t>(fd), offset}});
  advise_early(v, calls);
  return {};
}

// Every mapping of the image, in one batch (each injected call on its own costs two ptrace stops,
// and a process has dozens of mappings); System V segments are attached on their own.
Status map_all(RestoreContext& ctx, const std::vector<schema::Vma>& vmas) {
  std::vector<ptrace::BatchCall> calls;
  for (auto& v : vmas) {
    if (!is_mapped(v)) continue;
    if (v.sysv_shm)
      CKPT_TRY(sysv_ipc::attach(ctx, v));
    else
      CKPT_TRY(plan_map(ctx, v, calls));
  }
  CKPT_TRY(run_batch(ctx, calls));
  for (auto& c : calls)
    if (c.nr == SYS_mmap && static_cast<uint64_t>(c.ret) != c.args[0])
      return errorf("restore pid {}: mmap at {:#x} landed at {:#x}", ctx.pid, c.args[0], c.ret);
  return {};
}

// Pages of one mapping that the image holds, in section order; each inside its mapping.
Result<std::vector<Range>> ranges_of(const RestoreContext& ctx, const schema::Vma& v) {
  std::vector<Range> out;
  for (auto& r : v.pages) {
    if (r.start < v.start || r.end > v.end || r.start >= r.end)
      return errorf("restore pid {}: saved pages {:#x}-{:#x} lie outside their mapping {:#x}-{:#x}",
                    ctx.pid, r.start, r.end, v.start, v.end);
    out.emplace_back(r.start, r.end);
  }
  return out;
}

// The pages of `v` saved only as the root's (cow_shared.hpp), checked like its own; they need the
// base, which holds them (placed, or kept aside).
Result<std::vector<Range>> from_root_of(const RestoreContext& ctx, const schema::Vma& v) {
  std::vector<Range> out;
  for (auto& r : v.from_root) {
    if (r.start < v.start || r.end > v.end || r.start >= r.end)
      return errorf(
          "restore pid {}: pages {:#x}-{:#x} saved as the root's lie outside their "
          "mapping {:#x}-{:#x}",
          ctx.pid, r.start, r.end, v.start, v.end);
    out.emplace_back(r.start, r.end);
  }
  if (!out.empty() && !ctx.base)
    return errorf(
        "restore pid {}: {:#x}-{:#x} has pages saved only as the root's, and the "
        "root's memory is not at hand",
        ctx.pid, v.start, v.end);
  return out;
}

// Two sorted lists of ranges as one.
std::vector<Range> merged(const std::vector<Range>& a, const std::vector<Range>& b) {
  if (b.empty()) return a;
  std::vector<Range> out(a);
  out.insert(out.end(), b.begin(), b.end());
  std::sort(out.begin(), out.end());
  return out;
}

// Writes into a mapping kept from the base only the pages that differ from it; the restorer's own
// copy of the base is at the same address. The others stay shared.
Status write_changed(pid_t pid, uint64_t at, const std::byte* data, size_t len) {
  const auto* base = reinterpret_cast<const std::byte*>(at);
  for (size_t off = 0; off < len;) {
    size_t page = std::min<size_t>(kPage, len - off);
    if (std::memcmp(base + off, data + off, page) == 0) {
      off += page;
      continue;
    }
    size_t end = off + page;
    while (end < len) {
      size_t next = std::min<size_t>(kPage, len - end);
      if (std::memcmp(base + end, data + end, next) == 0) break;
      end += next;
    }
    CKPT_TRY(write_remote(pid, at + off, data + off, end - off));
    off = end;
  }
  return {};
}

// The base's pages inside `v` that the process did not have (it reads zeros there) are dropped.
// The base's area may reach beyond `v` (holds()): what lies outside is another mapping's.
Status drop_unsaved(RestoreContext& ctx, const cow_shared::Area& kept, const schema::Vma& v,
                    const std::vector<Range>& saved) {
  for (auto& f : kept.filled()) {
    uint64_t s = std::max(f.start, v.start), end = std::min(f.end, v.end);
    if (s >= end) continue;
    for (auto [a, b] : saved) {
      if (b <= s || a >= end) continue;
      if (a > s) CKPT_TRY(ctx.main_remote->call("madvise", SYS_madvise, {s, a - s, MADV_DONTNEED}));
      s = std::max(s, b);
    }
    if (s < end)
      CKPT_TRY(ctx.main_remote->call("madvise", SYS_madvise, {s, end - s, MADV_DONTNEED}));
  }
  return {};
}

// An incremental generation's pages come from its chain (page_chain.hpp).
Status fill_from_chain(RestoreContext& ctx, const std::vector<schema::Vma>& vmas) {
  for (auto& v : vmas)
    if (!v.from_root.empty())
      return errorf("restore pid {}: an incremental generation with pages saved as the root's",
                    ctx.pid);
  std::vector<ptrace::BatchCall> populates;
  for (auto& v : vmas) {
    CKPT_TRY_ASSIGN(auto ranges, ranges_of(ctx, v));
    add_populate(ranges, populates);
  }
  return page_chain::fill(ctx, populates);
}

// A mapping's saved pages and the base's area it keeps, looked up once for the populate and the
// copy.
struct Filled {
  std::vector<Range> ranges, from_root;
  const cow_shared::Area* kept = nullptr;
};

// Fills `into` from the section; `at` names where in errors.
Status read_fully(image::SectionReader& reader, std::span<std::byte> into, pid_t pid, uint64_t at) {
  for (size_t got = 0; got < into.size();) {
    CKPT_TRY_ASSIGN(size_t n, reader.read(into.subspan(got)));
    if (n == 0) return errorf("restore pid {}: memory image ends early at {:#x}", pid, at);
    got += n;
  }
  return {};
}

// Copies one mapping's pages from the section into the puppet through `buf`, each piece once the
// populate got past it.
Status copy_mapping(RestoreContext& ctx, const schema::Vma& v, const Filled& f,
                    image::SectionReader& reader, std::span<std::byte> buf, Populated& ready) {
  if (!f.kept && !f.from_root.empty()) CKPT_TRY(ctx.base->write_aside(ctx.pid, v.from_root));
  for (auto [s, e] : f.ranges) {
    for (; s < e;) {
      auto piece = buf.first(std::min<uint64_t>(e - s, buf.size()));
      CKPT_TRY(read_fully(reader, piece, ctx.pid, s));
      CKPT_TRY(ready.until(s + piece.size()));
      if (f.kept)
        CKPT_TRY(write_changed(ctx.pid, s, piece.data(), piece.size()));
      else
        CKPT_TRY(write_remote(ctx.pid, s, piece.data(), piece.size()));
      ctx.progress->advance(piece.size());
      s += piece.size();
    }
  }
  if (f.kept) CKPT_TRY(drop_unsaved(ctx, *f.kept, v, merged(f.ranges, f.from_root)));
  return {};
}

// Reads the section (checking its checksum as it goes) through one small buffer and copies it into
// the puppet. Measured faster here than the puppet reading the data file itself with injected
// preadv (1 GiB: 0.6-0.9 s against 1.2-1.6 s): the kernel writes through its own mapping of the
// pinned pages (probably why: copies to user addresses are slow in this kind of guest).
Status fill(RestoreContext& ctx, const std::vector<schema::Vma>& vmas) {
  if (image::is_incremental(ctx.generation)) return fill_from_chain(ctx, vmas);
  CKPT_TRY(page_chain::check_index(ctx));
  CKPT_TRY_ASSIGN(auto reader, ctx.store->open_section(ctx.generation, ctx.section(kPagesSection)));
  // One buffer for every process of the restore: a new one would be faulted in again for each
  // (first touch runs at a few hundred MB/s here). One huge page (common/populate.hpp), not
  // zero-filled by us.
  thread_local const HugeBuffer storage(kFillBuffer);
  std::span<std::byte> buf(storage.bytes(), kFillBuffer);
  std::vector<Filled> filled;
  filled.reserve(vmas.size());
  // Populating a kept mapping would give the process a copy of every page it shares.
  std::vector<ptrace::BatchCall> populates;
  bool overlap = true;  // nothing to inject while copying (drop_unsaved, the base's pages)
  for (auto& v : vmas) {
    Filled f;
    f.kept = kept_area(ctx, v);
    CKPT_TRY_ASSIGN(f.ranges, ranges_of(ctx, v));
    CKPT_TRY_ASSIGN(f.from_root, from_root_of(ctx, v));
    if (!f.kept) add_populate(merged(f.ranges, f.from_root), populates);
    overlap = overlap && !f.kept && f.from_root.empty();
    filled.push_back(std::move(f));
  }
  CKPT_TRY(populate_while(ctx, populates, overlap, [&](Populated& ready) -> Status {
    for (size_t i = 0; i < vmas.size(); ++i)
      CKPT_TRY(copy_mapping(ctx, vmas[i], filled[i], *reader, buf, ready));
    return {};
  }));
  std::byte extra;
  CKPT_TRY_ASSIGN(size_t left, reader->read({&extra, 1}));
  if (left != 0)
    return errorf("restore pid {}: memory image has more data than its mappings", ctx.pid);
  return {};
}

// A mapping whose saved pages a lazy restore leaves to the page server: private anonymous memory
// of its own (userfaultfd fills nothing else with copies), not locked (mlock would fault it all
// in at once).
bool lazy_eligible(const RestoreContext& ctx, const schema::Vma& v) {
  static constexpr std::array<std::string_view, 4> kinds = {"anonymous", "heap", "stack",
                                                            "anon_named"};
  if (v.pages.empty() || v.shared || v.shm || v.sysv_shm || v.deleted_file) return false;
  if (std::find(kinds.begin(), kinds.end(), v.kind) == kinds.end()) return false;
  // A stack that grows down: the kernel extends it by faults of its own.
  if (v.has_flag("lo") || v.has_flag("ht") || v.has_flag("gd")) return false;
  return v.from_root.empty() && !kept_area(ctx, v);
}

// Why the memory of ctx's process must be filled now even in a lazy restore, or empty.
std::string why_not_lazy(const RestoreContext& ctx, const std::vector<schema::Vma>& vmas) {
  for (auto& v : vmas)
    if (!v.from_root.empty() || (is_mapped(v) && kept_area(ctx, v)))
      return "it shares memory with its parent since fork()";
  return {};
}

// A lazy restore's fill: the pages of eligible mappings go to the page server, the others are
// written now (each checked against the page index, as the server checks its own).
Status fill_lazily(RestoreContext& ctx, const std::vector<schema::Vma>& vmas,
                   page_chain::PageLocations locs) {
  std::vector<Range> lazy;
  for (auto& v : vmas)
    if (is_mapped(v) && lazy_eligible(ctx, v)) lazy.emplace_back(v.start, v.end);
  // The pages left to the server stay where they are (the list is big, fresh memory is slow).
  page_chain::PageLocations now{locs.files, {}};
  size_t r = 0, kept = 0;
  for (auto& p : locs.pages) {
    while (r < lazy.size() && lazy[r].second <= p.addr) ++r;
    bool in_lazy = r < lazy.size() && p.addr >= lazy[r].first;
    if (in_lazy) locs.pages[kept++] = p;
    if (!in_lazy) now.pages.push_back(p);
  }
  locs.pages.resize(kept);
  CKPT_TRY(lazy_pages::write_now(ctx, now));
  if (lazy.empty()) return {};
  CKPT_TRY_ASSIGN(ScopedFd uffd, lazy_pages::open_in_puppet(ctx, lazy));
  return ctx.lazy->add(ctx.pid, std::move(uffd), std::move(locs));
}

Status fill_or_defer(RestoreContext& ctx, const std::vector<schema::Vma>& vmas) {
  std::string why = why_not_lazy(ctx, vmas);
  if (why.empty()) {
    CKPT_TRY_ASSIGN(auto locs, page_chain::locate(ctx, &why));
    if (locs) return fill_lazily(ctx, vmas, std::move(*locs));
  }
  log::info("memory", "pid {}: memory filled before it runs: {}", ctx.pid, why);
  return fill(ctx, vmas);
}

// The calls that give mapping `v` its last protection and advice.
void finish_one(const schema::Vma& v, std::vector<ptrace::BatchCall>& calls) {
  uint64_t start = v.start, len = v.end - v.start;
  if (initial_prot(v) != v.prot)
    calls.push_back({"mprotect", SYS_mprotect, {start, len, uint64_t(v.prot)}});
  static const std::pair<const char*, int> advice[] = {
      {"dd", MADV_DONTDUMP}, {"dc", MADV_DONTFORK}, {"wf", MADV_WIPEONFORK}};
  for (auto& [code, adv] : advice)
    if (v.has_flag(code)) calls.push_back({"madvise", SYS_madvise, {start, len, uint64_t(adv)}});
  if (v.has_flag("lo")) calls.push_back({"mlock", SYS_mlock, {start, len}, false});
}

Status finish_all(RestoreContext& ctx, const std::vector<schema::Vma>& vmas) {
  std::vector<ptrace::BatchCall> calls;
  for (auto& v : vmas)
    if (is_mapped(v)) finish_one(v, calls);
  CKPT_TRY(run_batch(ctx, calls));
  for (auto& c : calls)
    if (c.nr == SYS_mlock && c.ret < 0)
      log::warn("memory", "pid {}: could not lock {:#x}+{:#x} again: errno {}", ctx.pid, c.args[0],
                c.args[1], -c.ret);
  return {};
}

}  // namespace

Status protect_kept_in_puppet(const schema::ProcessRecord& rec, const cow_shared::Base& base) {
  for (auto& v : rec.memory.vmas) {
    // The base maps its areas read-write (cow_shared::premap).
    if (!is_mapped(v) || v.sysv_shm || !base.find(v) || initial_prot(v) == (PROT_READ | PROT_WRITE))
      continue;
    if (::mprotect(reinterpret_cast<void*>(v.start), v.end - v.start, initial_prot(v)) < 0)
      return sys_error(fmt::format("mprotect {:#x}-{:#x} kept from the root", v.start, v.end));
  }
  return {};
}

Status restore(RestoreContext& ctx) {
  CKPT_TRY_ASSIGN(auto own, proc::read_maps(ctx.pid));
  CKPT_TRY(unmap_puppet(ctx, own));
  CKPT_TRY(ctx.vdso_proxy ? proxy_vdso(ctx, own) : move_vdso(ctx, own));
  const auto& vmas = ctx.rec->memory.vmas;
  CKPT_TRY(map_all(ctx, vmas));
  CKPT_TRY(ctx.lazy ? fill_or_defer(ctx, vmas) : fill(ctx, vmas));
  return finish_all(ctx, vmas);
}

}  // namespace ckpt::memory
