#include "resources/lazy_pages.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "common/checksum.hpp"
#include "common/log.hpp"
#include "common/populate.hpp"
#include "proc/task.hpp"
#include "resources/fds/fd_access.hpp"

namespace ckpt::lazy_pages {
namespace {

using Clock = std::chrono::steady_clock;
using page_chain::PageLocation;

constexpr uint64_t kPage = 4096;
// A fault is answered with the page and the pending ones right after it (programs read on):
// more would make the faulting thread wait for pages it may not need.
constexpr size_t kFaultRun = 16;
// The background copy's step, between two looks for faults.
constexpr size_t kPrefetchRun = 64;
constexpr uint64_t kFeatures = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
                               UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;

enum : uint8_t { kPending, kIn, kDropped };

// A page and its state, together while a remap sorts them again.
struct Slot {
  PageLocation loc;
  uint8_t state = kPending;
};

void wake_range(int uffd, uint64_t addr, uint64_t len = kPage) {
  uffdio_range r{addr, len};
  (void)::ioctl(uffd, UFFDIO_WAKE, &r);
}

// Every descendant of `pid` (children of children...), found before any is killed: a killed
// parent's children move to another parent.
void add_descendants(pid_t pid, std::vector<pid_t>& out) {
  auto kids = proc::list_children(pid);
  if (!kids.ok()) return;
  for (pid_t k : *kids) {
    out.push_back(k);
    add_descendants(k, out);
  }
}

}  // namespace

struct PageFiles {
  std::vector<ScopedFd> fds;
  std::vector<std::string> paths;  // for messages
};

namespace {

Result<PageFiles> open_page_files(const page_chain::PageLocations& pages, std::string_view who) {
  PageFiles files;
  for (auto& path : pages.files) {
    ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return sys_error(fmt::format("{}: open {}", who, path.string()));
    files.fds.push_back(std::move(fd));
    files.paths.push_back(path.string());
  }
  return files;
}

// Reads `count` pages (the k-th at `at(k)`) into dst, a pread per run that is contiguous in one
// file, and checks each against the hash in the page index.
template <class At>
Status read_checked(const PageFiles& files, size_t count, At at, std::byte* dst,
                    std::string_view who) {
  for (size_t k = 0; k < count;) {
    const PageLocation& head = at(k);
    size_t run = 1;
    while (k + run < count && at(k + run).file == head.file &&
           at(k + run).offset == head.offset + run * kPage)
      ++run;
    ssize_t got = ::pread(files.fds[head.file].get(), dst + k * kPage, run * kPage,
                          static_cast<off_t>(head.offset));
    if (got != static_cast<ssize_t>(run * kPage))
      return errorf("{}: reading page {:#x} from {} at offset {}: {}", who, head.addr,
                    files.paths[head.file], head.offset,
                    got < 0 ? std::strerror(errno) : "the file ends early");
    k += run;
  }
  for (size_t k = 0; k < count; ++k) {
    const PageLocation& p = at(k);
    if (page_hash(dst + k * kPage, kPage) != p.hash)
      return errorf(
          "{}: page {:#x} in {} at offset {} does not match its page index: the image is damaged",
          who, p.addr, files.paths[p.file], p.offset);
  }
  return {};
}

}  // namespace

struct Server::Mm {
  pid_t pid = 0;  // 0 for a child forked since the restore (the event does not name it)
  uint32_t id = 0;
  bool guarded = false;  // the guard holds a copy of uffd
  ScopedFd uffd;
  std::shared_ptr<const PageFiles> files;
  std::vector<PageLocation> pages;  // ascending addresses
  std::vector<uint8_t> state;       // of each page
  size_t cursor = 0;                // where the background copy goes on
  size_t pending = 0;
  bool gone = false;               // the process ended (or exec'd)
  std::vector<uint64_t> deferred;  // faults to answer once the process's memory stops changing

  size_t find(uint64_t addr) const {
    auto it = std::lower_bound(pages.begin(), pages.end(), addr,
                               [](const PageLocation& p, uint64_t a) { return p.addr < a; });
    return static_cast<size_t>(it - pages.begin());
  }
  void mark(size_t i, uint8_t to) {
    if (state[i] == kPending) --pending;
    state[i] = to;
  }
  void drop(uint64_t start, uint64_t end) {
    for (size_t i = find(start); i < pages.size() && pages[i].addr < end; ++i)
      if (state[i] == kPending) mark(i, kDropped);
  }
  // Pending pages move with their mapping; what was at the destination is gone.
  void remap(uint64_t from, uint64_t to, uint64_t len) {
    auto moved = [&](uint64_t a) { return a >= from && a < from + len; };
    std::vector<Slot> slots;
    for (size_t i = 0; i < pages.size(); ++i) {
      Slot sl{pages[i], state[i]};
      bool at_dest = sl.loc.addr >= to && sl.loc.addr < to + len && !moved(sl.loc.addr);
      if (at_dest && sl.state == kPending) --pending;
      if (at_dest) continue;
      if (moved(sl.loc.addr)) sl.loc.addr = sl.loc.addr - from + to;
      slots.push_back(sl);
    }
    std::sort(slots.begin(), slots.end(),
              [](const Slot& a, const Slot& b) { return a.loc.addr < b.loc.addr; });
    pages.clear();
    state.clear();
    for (auto& sl : slots) {
      pages.push_back(sl.loc);
      state.push_back(sl.state);
    }
    cursor = 0;
  }
  std::string name() const { return pid ? fmt::format("pid {}", pid) : "a forked child"; }
};

std::string describe(const Stats& s) {
  return fmt::format("complete in {:.1f} ms: {} pages on demand ({} faults), {} in the background",
                     std::chrono::duration<double, std::milli>(s.took).count(), s.pages_on_fault,
                     s.faults, s.pages_prefetched);
}

Result<std::unique_ptr<Server>> Server::start() {
  std::unique_ptr<Server> s(new Server);
  s->wake_ = ScopedFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  s->done_fd_ = ScopedFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->wake_ || !s->done_fd_) return sys_error("lazy restore: eventfd");
  s->buffer_.reset(new std::byte[kPrefetchRun * kPage]);
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

Server::~Server() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
  // A process whose pages are not all in would read zeros where the rest belong.
  if (!done_ && !(mms_.empty() && incoming_.empty())) kill_all(false);
}

Status Server::add(pid_t pid, ScopedFd uffd, page_chain::PageLocations pages) {
  CKPT_TRY_ASSIGN(PageFiles files,
                  open_page_files(pages, fmt::format("lazy restore of pid {}", pid)));
  auto mm = std::make_unique<Mm>();
  mm->pid = pid;
  mm->uffd = std::move(uffd);
  mm->files = std::make_shared<const PageFiles>(std::move(files));
  mm->pages = std::move(pages.pages);
  mm->state.assign(mm->pages.size(), kPending);
  mm->pending = mm->pages.size();
  {
    std::lock_guard lk(mu_);
    if (started_ == Clock::time_point{}) started_ = Clock::now();
    pids_.push_back(pid);
    incoming_.push_back(std::move(mm));
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  return {};
}

void Server::start_guard() {
  {
    std::lock_guard lk(mu_);
    guard_wanted_ = true;
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

void Server::seal() {
  {
    std::lock_guard lk(mu_);
    sealed_ = true;
    guard_wanted_ = true;
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  std::unique_lock lk(mu_);
  done_cv_.wait(lk, [&] { return guarded_ || done_; });
}

Status Server::wait() {
  std::unique_lock lk(mu_);
  done_cv_.wait(lk, [&] { return done_; });
  if (error_) return *error_;
  return {};
}

std::optional<Error> Server::error() const {
  std::lock_guard lk(mu_);
  return error_;
}

Stats Server::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

bool Server::finished_locked() const {
  return sealed_ && mms_.empty() && incoming_.empty();
}

void Server::fail(std::string message) {
  std::lock_guard lk(mu_);
  if (!error_) error_ = make_error(message);
}

void Server::kill_all(bool loud) {
  std::vector<pid_t> roots;
  {
    std::lock_guard lk(mu_);
    roots = pids_;
  }
  std::vector<pid_t> victims;
  for (pid_t p : roots) {
    add_descendants(p, victims);
    victims.push_back(p);
  }
  for (pid_t p : victims) ::kill(p, SIGKILL);
  if (loud)
    log::warn("lazy", "killed {} restored process(es) whose memory could not be completed",
              victims.size());
}

void Server::run() {
  std::vector<pollfd> polls;
  size_t turn = 0;
  bool failed = false;
  for (;;) {
    bool sealed = false, guard_wanted = false;
    {
      std::lock_guard lk(mu_);
      for (auto& m : incoming_) mms_.push_back(std::move(m));
      incoming_.clear();
      if (stopping_) return;
      failed = error_.has_value();
      if (failed || finished_locked()) break;
      sealed = sealed_;
      guard_wanted = guard_wanted_;
    }
    // Each turn: a child the program forks meanwhile (a fork event) is guarded too.
    if (guard_wanted) guard_all();
    if (guard_wanted && !guarded_) {
      std::lock_guard lk(mu_);
      guarded_ = true;
      done_cv_.notify_all();
    }
    // Only faults while the processes are built: the copy in the background would slow that.
    bool work =
        sealed && std::any_of(mms_.begin(), mms_.end(), [](auto& m) { return m->pending > 0; });
    polls.assign(1, pollfd{wake_.get(), POLLIN, 0});
    for (auto& m : mms_) polls.push_back({m->uffd.get(), POLLIN, 0});
    if (::poll(polls.data(), polls.size(), work ? 0 : -1) < 0 && errno != EINTR) {
      fail(fmt::format("lazy restore: poll: {}", std::strerror(errno)));
      continue;
    }
    uint64_t count;
    if (polls[0].revents) (void)!::read(wake_.get(), &count, sizeof count);
    // Faults first: a thread of the program waits for each.
    size_t n = mms_.size();  // serve_events may add forked children
    for (size_t i = 0; i < n; ++i)
      if (polls[i + 1].revents) serve_events(*mms_[i]);
    if (work && !mms_.empty()) {
      turn = (turn + 1) % mms_.size();
      for (size_t k = 0; k < mms_.size(); ++k) {
        Mm& m = *mms_[(turn + k) % mms_.size()];
        if (m.pending == 0 || m.gone) continue;
        prefetch(m);
        break;
      }
    }
    std::erase_if(mms_, [&](auto& m) {
      bool over = m->gone || m->pending == 0;
      if (over && m->guarded) guard_->forget(m->id);
      return over;
    });
  }
  // Failed: nobody may read a page that is not there.
  if (failed) kill_all(true);
  mms_.clear();
  if (guard_) guard_->done();
  guard_.reset();
  std::lock_guard lk(mu_);
  if (started_ != Clock::time_point{}) live_.took = Clock::now() - started_;
  stats_ = live_;
  done_ = true;
  done_cv_.notify_all();
  uint64_t one = 1;
  (void)!::write(done_fd_.get(), &one, sizeof one);
}

// Once the processes run, a guard holds their userfaultfds too (lazy_guard.hpp). Without one
// (it could not be started) the restore goes on, as it would have before guards existed.
void Server::guard_all() {
  if (!guard_tried_) {
    guard_tried_ = true;
    auto g = Guard::start();
    if (g.ok()) guard_.emplace(std::move(*g));
    if (!g.ok())
      log::warn("lazy", "{}: ckpt's death would leave the processes unguarded", g.error().message);
  }
  if (!guard_) return;
  for (auto& m : mms_) {
    if (m->guarded) continue;
    m->id = next_id_++;
    m->guarded = true;
    Status st = guard_->watch(m->id, m->uffd.get(), m->pid);
    if (!st.ok()) log::warn("lazy", "{}", st.error().message);
  }
}

void Server::serve_events(Mm& mm) {
  std::array<uffd_msg, 32> msgs;
  for (;;) {
    ssize_t got = ::read(mm.uffd.get(), msgs.data(), sizeof msgs);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == EAGAIN) {
      if (mm.deferred.empty()) return;
      auto again = std::move(mm.deferred);
      mm.deferred.clear();
      for (uint64_t a : again) on_fault(mm, a);
      if (mm.gone) return;
      continue;
    }
    if (got <= 0) {
      fail(fmt::format("lazy restore of {}: reading its userfaultfd: {}", mm.name(),
                       got < 0 ? std::strerror(errno) : "end of file"));
      return;
    }
    for (size_t i = 0; i < static_cast<size_t>(got) / sizeof(uffd_msg); ++i) {
      const uffd_msg& m = msgs[i];
      switch (m.event) {
        case UFFD_EVENT_PAGEFAULT:
          on_fault(mm, m.arg.pagefault.address);
          break;
        case UFFD_EVENT_FORK: {
          // The child has every page its parent has, and misses the same ones.
          auto child = std::make_unique<Mm>();
          child->uffd = ScopedFd(static_cast<int>(m.arg.fork.ufd));
          child->files = mm.files;
          child->pages = mm.pages;
          child->state = mm.state;
          child->cursor = mm.cursor;
          child->pending = mm.pending;
          mms_.push_back(std::move(child));
          break;
        }
        case UFFD_EVENT_REMAP:
          mm.remap(m.arg.remap.from, m.arg.remap.to, m.arg.remap.len);
          break;
        case UFFD_EVENT_REMOVE:  // madvise(MADV_DONTNEED): those pages read zeros now
        case UFFD_EVENT_UNMAP:
          mm.drop(m.arg.remove.start, m.arg.remove.end);
          break;
        default:
          break;
      }
      if (mm.gone) return;
    }
  }
}

void Server::on_fault(Mm& mm, uint64_t addr) {
  addr &= ~(kPage - 1);
  ++live_.faults;
  size_t i = mm.find(addr);
  bool known = i < mm.pages.size() && mm.pages[i].addr == addr;
  if (known && mm.state[i] == kPending) {
    size_t count = 1;
    while (count < kFaultRun && i + count < mm.pages.size() && mm.state[i + count] == kPending &&
           mm.pages[i + count].addr == addr + count * kPage)
      ++count;
    uint64_t before = mm.pending;
    if (copy(mm, i, count) == Copied::retry) mm.deferred.push_back(addr);
    live_.pages_on_fault += before - mm.pending;
    return;
  }
  if (known && mm.state[i] == kIn) return wake_range(mm.uffd.get(), addr);
  zero_fill(mm, i, addr);
}

// A page the image does not hold, or one the program dropped since, reads zeros; so do its
// neighbours that expect nothing from the image, given in the same call (a program that reads
// an area it dropped would otherwise cost a fault per page). `i`: the first slot at or above addr.
void Server::zero_fill(Mm& mm, size_t i, uint64_t addr) {
  size_t n = 1;
  for (; n < kFaultRun; ++n) {
    uint64_t next = addr + n * kPage;
    while (i < mm.pages.size() && mm.pages[i].addr < next) ++i;
    if (i < mm.pages.size() && mm.pages[i].addr == next && mm.state[i] != kDropped) break;
  }
  for (;;) {
    uffdio_zeropage z{};
    z.range = {addr, n * kPage};
    int rc = ::ioctl(mm.uffd.get(), UFFDIO_ZEROPAGE, &z);
    int err = errno;
    if (z.zeropage > 0) live_.zero_pages += static_cast<uint64_t>(z.zeropage) / kPage;
    if (rc == 0) return;
    // The run reached another mapping (or a hole): the faulting page alone.
    if (err == ENOENT && n > 1 && z.zeropage <= 0) {
      n = 1;
      continue;
    }
    if (err == EEXIST || (err == ENOENT && z.zeropage > 0))
      return wake_range(mm.uffd.get(), addr, n * kPage);
    if (err == EAGAIN) return mm.deferred.push_back(addr);
    if (err == ESRCH) {
      mm.gone = true;
      return;
    }
    // ENOENT for the page itself: the mapping went away; its unmap event follows.
    if (err != ENOENT)
      fail(fmt::format("lazy restore of {}: UFFDIO_ZEROPAGE at {:#x}: {}", mm.name(), addr,
                       std::strerror(err)));
    return;
  }
}

void Server::prefetch(Mm& mm) {
  while (mm.cursor < mm.pages.size() && mm.state[mm.cursor] != kPending) ++mm.cursor;
  if (mm.cursor == mm.pages.size()) {
    mm.cursor = 0;  // a remap may have moved pending pages behind the cursor
    return;
  }
  size_t i = mm.cursor, count = 1;
  uint64_t addr = mm.pages[i].addr;
  while (count < kPrefetchRun && i + count < mm.pages.size() && mm.state[i + count] == kPending &&
         mm.pages[i + count].addr == addr + count * kPage)
    ++count;
  uint64_t before = mm.pending;
  (void)copy(mm, i, count);  // retry: events come first, the next round tries again
  live_.pages_prefetched += before - mm.pending;
}

bool Server::read_pages(Mm& mm, size_t first, size_t count) {
  Status st = read_checked(
      *mm.files, count, [&](size_t k) -> const PageLocation& { return mm.pages[first + k]; },
      buffer_.get(), fmt::format("lazy restore of {}", mm.name()));
  if (!st.ok()) fail(st.error().message);
  return st.ok();
}

Server::Copied Server::copy(Mm& mm, size_t first, size_t count) {
  if (!read_pages(mm, first, count)) return Copied::gone;
  Copied result = copy_read(mm, first, count);
  // A copy that stopped early wakes nobody: a thread may wait on any page of the run (which is
  // contiguous in memory: callers pick it so).
  if (result != Copied::gone) wake_range(mm.uffd.get(), mm.pages[first].addr, count * kPage);
  return result;
}

Server::Copied Server::copy_read(Mm& mm, size_t first, size_t count) {
  size_t done = 0;
  // UFFDIO_COPY fills one mapping at a time: a run across two (a stack beside another mapping,
  // pages beside a PROT_NONE one) fails whole with ENOENT, and then goes page by page.
  bool one_by_one = false;
  while (done < count) {
    uffdio_copy c{};
    c.dst = mm.pages[first + done].addr;
    c.src = reinterpret_cast<uint64_t>(buffer_.get() + done * kPage);
    c.len = (one_by_one ? 1 : count - done) * kPage;
    int rc = ::ioctl(mm.uffd.get(), UFFDIO_COPY, &c);
    int err = errno;
    size_t copied = c.copy > 0 ? static_cast<size_t>(c.copy) / kPage : 0;
    for (size_t k = 0; k < copied; ++k) mm.mark(first + done + k, kIn);
    done += copied;
    if (rc == 0) continue;
    if (err == EEXIST) {
      mm.mark(first + done, kIn);  // the program has this page already (it is not missing)
      ++done;
      continue;
    }
    if (err == EAGAIN) return Copied::retry;
    if (err == ESRCH) {
      mm.gone = true;
      return Copied::gone;
    }
    if (err == ENOENT && c.len > kPage) {
      one_by_one = true;
      continue;
    }
    if (err == ENOENT) {  // unmapped; the event follows and drops the rest
      mm.mark(first + done, kDropped);
      ++done;
      continue;
    }
    fail(fmt::format("lazy restore of {}: UFFDIO_COPY at {:#x}: {}", mm.name(),
                     mm.pages[first + done].addr, std::strerror(err)));
    return Copied::gone;
  }
  return Copied::ok;
}

Status write_now(RestoreContext& ctx, const page_chain::PageLocations& pages) {
  if (pages.pages.empty()) return {};
  std::string who = fmt::format("restore pid {}", ctx.pid);
  CKPT_TRY_ASSIGN(PageFiles files, open_page_files(pages, who));
  std::vector<std::byte> buf(kPrefetchRun * kPage);
  const auto& all = pages.pages;
  for (size_t i = 0; i < all.size();) {
    // Neighbours in memory go in one write.
    size_t n = 1;
    while (n < kPrefetchRun && i + n < all.size() && all[i + n].addr == all[i].addr + n * kPage)
      ++n;
    CKPT_TRY(read_checked(
        files, n, [&](size_t k) -> const PageLocation& { return all[i + k]; }, buf.data(), who));
    CKPT_TRY(write_remote(ctx.pid, all[i].addr, buf.data(), n * kPage));
    ctx.progress->advance(n * kPage);
    i += n;
  }
  return {};
}

Result<ScopedFd> open_in_puppet(RestoreContext& ctx,
                                const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  auto& rs = *ctx.main_remote;
  CKPT_TRY_ASSIGN(long fd, rs.call("userfaultfd", SYS_userfaultfd, {O_CLOEXEC | O_NONBLOCK}));
  auto taken = fds::borrow_fd(ctx.pid, static_cast<int>(fd));
  CKPT_TRY(rs.call("close", SYS_close, {static_cast<uint64_t>(fd)}));
  if (!taken.ok()) return taken.error();
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = kFeatures;
  if (::ioctl(taken->get(), UFFDIO_API, &api) < 0)
    return sys_error(fmt::format("restore pid {}: UFFDIO_API", ctx.pid));
  for (auto [start, end] : ranges) {
    uffdio_register reg{};
    reg.range = {start, end - start};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(taken->get(), UFFDIO_REGISTER, &reg) < 0)
      return sys_error(
          fmt::format("restore pid {}: UFFDIO_REGISTER {:#x}-{:#x}", ctx.pid, start, end));
  }
  return std::move(*taken);
}

}  // namespace ckpt::lazy_pages
