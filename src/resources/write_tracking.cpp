#include "resources/write_tracking.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include <sstream>

#include "common/log.hpp"
#include "common/phase_clock.hpp"
#include "proc/page_scan.hpp"
#include "proc/pagemap_abi.hpp"
#include "proc/stat.hpp"
#include "resources/context.hpp"
#include "resources/fds/fd_access.hpp"

namespace ckpt::write_tracking {
namespace {

using namespace proc::pagemap_abi;

// Faults from the kernel's own accesses (a read() into the buffer) are resolved by the kernel in
// asynchronous mode all the same; user-mode-only lets an unprivileged process make the fd.
constexpr uint64_t kUserModeOnly = 1;  // UFFD_USER_MODE_ONLY, newer than Debian 12's headers
constexpr uint64_t kWpUnpopulated = 1ULL << 13;  // UFFD_FEATURE_WP_UNPOPULATED
constexpr uint64_t kWpAsync = 1ULL << 15;        // UFFD_FEATURE_WP_ASYNC

}  // namespace

Result<ScopedFd> open_in(DumpContext& ctx) {
  Result<ScopedFd> taken = errorf("pid {}: userfaultfd not made", ctx.pid);
  CKPT_TRY(ctx.with_remote(0, 0, [&](ptrace::RemoteSyscalls& rs, RemoteScratch) -> Status {
    auto fd = rs.call("userfaultfd", SYS_userfaultfd, {O_CLOEXEC | O_NONBLOCK | kUserModeOnly});
    if (!fd.ok()) fd = rs.call("userfaultfd", SYS_userfaultfd, {O_CLOEXEC | O_NONBLOCK});
    if (!fd.ok()) return fd.error();
    taken = fds::borrow_fd(ctx.pid, static_cast<int>(*fd));
    CKPT_TRY(rs.call("close", SYS_close, {static_cast<uint64_t>(*fd)}));
    return {};
  }));
  if (!taken.ok()) return taken.error();
  // Without WP_UNPOPULATED the kernel does not count anonymous mappings as write-protectable
  // (PAGE_IS_WPALLOWED); holes are never protected here, so it costs nothing.
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = kWpAsync | kWpUnpopulated;
  if (::ioctl(taken->get(), UFFDIO_API, &api) < 0)
    return sys_error(fmt::format("pid {}: UFFDIO_API with asynchronous write-protection", ctx.pid));
  return taken;
}

namespace {

// The private mappings of `maps` that `uffd` now tracks, each registered (again: a no-op for one
// it has). A mapping the kernel refuses (one a userfaultfd of the program's own has) is the
// program's to protect: never protected by ckpt, never taken as unchanged. Empty after an exec,
// when the userfaultfd belongs to a memory that is gone.
proc::RangeSet register_tracked(int uffd, const std::vector<proc::MapEntry>& maps) {
  proc::RangeSet where = proc::tracked_ranges(maps), refused;
  proc::register_for_tracking(uffd, where, maps, &refused);
  return proc::range_subtract(where, refused);
}

// The pages that can be trusted to hold what they held at the last renewal: write-protected
// (so not written since), with data of their own, and not the shared zero page (a page dropped
// with MADV_DONTNEED and read again is the zero page with its protection kept).
Result<proc::RangeSet> unwritten(proc::PageScanner& scanner, const proc::RangeSet& where) {
  proc::ScanQuery q;
  q.inverted = kIsWritten | kIsPfnZero;
  q.mask = kIsWpAllowed | kIsWritten | kIsPfnZero;
  q.anyof = kIsPresent | kIsSwapped;
  CKPT_TRY_ASSIGN(auto found, scanner.scan(where, q));
  proc::RangeSet out;
  for (auto& r : found) proc::append_range(out, r.start, r.end);
  return out;
}

Status renew_one(DumpContext& ctx, Tracker& tracker, const std::string& parent) {
  PhaseClock clock(ctx.pid);
  CKPT_TRY_ASSIGN(auto stat, proc::read_stat(ctx.pid));
  auto& entries = tracker.entries();
  auto it = entries.find(ctx.pid);
  if (it != entries.end() && it->second.start_time != stat.starttime) {
    entries.erase(it);
    it = entries.end();
  }
  uint64_t want = proc::range_bytes(proc::tracked_ranges(ctx.maps));
  proc::RangeSet where;
  bool known = it != entries.end();
  if (known) {
    where = register_tracked(it->second.uffd.get(), ctx.maps);
    if (want > 0 && where.empty()) {
      log::debug("memory", "pid {}: write tracking lost (exec?); starting again", ctx.pid);
      entries.erase(it);
      known = false;
    }
  }
  if (!known) {
    CKPT_TRY_ASSIGN(ScopedFd uffd, open_in(ctx));
    where = register_tracked(uffd.get(), ctx.maps);
    if (uint64_t got = proc::range_bytes(where); got < want)
      log::debug("memory", "pid {}: {} of {} bytes not tracked", ctx.pid, want - got, want);
    it = entries.insert_or_assign(ctx.pid, Entry{stat.starttime, std::move(uffd), {}, false}).first;
  }
  clock.mark("write tracking: register");
  CKPT_TRY_ASSIGN(proc::PageScanner scanner, proc::PageScanner::open(ctx.pid));
  Entry& e = it->second;
  bool from_parent = known && !parent.empty() && e.base == parent;
  e.renewed = false;
  e.base.clear();
  // One pass over the page tables, the longest step of the freeze: every page with data of its
  // own, which of them were written (protected again as they are found).
  proc::RangeSet written, own;
  CKPT_TRY(scanner.own_data_split(where, ctx.maps, &written, &own, true));
  e.renewed = true;
  clock.mark("write tracking: pages found, written ones protected");
  if (from_parent) ctx.unchanged = proc::range_subtract(own, written);
  ctx.own_pages = {std::move(where), std::move(own)};
  return {};
}

}  // namespace

void renew(DumpContext& ctx, Tracker& tracker, const std::string& parent) {
  ctx.unchanged.clear();
  ctx.own_pages = {};
  if (Status st = renew_one(ctx, tracker, parent); !st.ok()) {
    ctx.unchanged.clear();
    ctx.own_pages = {};
    tracker.entries().erase(ctx.pid);
    log::warn("memory", "pid {}: no write tracking ({}); its pages are read and hashed", ctx.pid,
              st.error().message);
  }
}

Result<proc::RangeSet> protect_all(pid_t pid, int uffd, const std::vector<proc::MapEntry>& maps) {
  proc::RangeSet where = register_tracked(uffd, maps);
  CKPT_TRY_ASSIGN(proc::PageScanner scanner, proc::PageScanner::open(pid));
  CKPT_TRY(scanner.take_written(where));
  return where;
}

void unchanged_since(DumpContext& ctx, const Entry& e) {
  ctx.unchanged.clear();
  auto stat = proc::read_stat(ctx.pid);
  if (!stat.ok() || stat->starttime != e.start_time) return;
  proc::RangeSet where = register_tracked(e.uffd.get(), ctx.maps);
  if (where.empty()) return;  // nothing tracked, or an exec: the protection was another memory's
  auto scanner = proc::PageScanner::open(ctx.pid);
  auto found = scanner.ok() ? unwritten(*scanner, where) : Result<proc::RangeSet>(scanner.error());
  if (!found.ok()) {
    log::warn("memory", "pid {}: write tracking not read ({}); its pages are read again", ctx.pid,
              found.error().message);
    return;
  }
  ctx.unchanged = std::move(*found);
}

bool follows(const Tracker* tracker, pid_t pid) {
  return tracker && tracker->entries().contains(pid);
}

std::string Tracker::encode(pid_t pid, const Entry& e) {
  return fmt::format("track {} {} {}", pid, e.start_time, e.renewed ? 1 : 0);
}

void Tracker::receive(std::string_view message, ScopedFd uffd, const std::string& generation) {
  std::istringstream in{std::string(message)};
  std::string word;
  pid_t pid = 0;
  uint64_t start = 0;
  int renewed = 0;
  if (!(in >> word >> pid >> start >> renewed) || word != "track" || !uffd) return;
  received_[pid] = true;
  entries_.insert_or_assign(
      pid, Entry{start, std::move(uffd), renewed && !generation.empty() ? generation : "", false});
}

void Tracker::finish_round() {
  std::erase_if(entries_, [&](auto& kv) { return !received_.contains(kv.first); });
}

}  // namespace ckpt::write_tracking
