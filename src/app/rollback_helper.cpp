#include "app/rollback_helper.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "app/rollback_freeze.hpp"
#include "common/log.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::rollback {
namespace {

void copy_message(Reply& rep, std::string_view msg) {
  size_t n = std::min(msg.size(), sizeof rep.message - 1);
  std::memcpy(rep.message, msg.data(), n);
  rep.message[n] = '\0';
}

uint64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

StepTimer::StepTimer(const char* what) : what_(what), start_ns_(now_ns()), last_ns_(start_ns_) {}

void StepTimer::step(const char* name) {
  uint64_t t = now_ns();
  text_ += fmt::format(" {} {:.3f}", name, static_cast<double>(t - last_ns_) / 1e6);
  last_ns_ = t;
}

StepTimer::~StepTimer() {
  log::debug("rollback", "{} {:.3f} ms:{}", what_, static_cast<double>(now_ns() - start_ns_) / 1e6,
             text_);
}

Helper::Helper(pid_t target, void* base, int uffd)
    : target_(target), self_(::getpid()), rw_(rw_area(base)), ro_(ro_area(base)), uffd_(uffd) {
  info_.pid = target;
  info_.rw = rw_;
  info_.base = rw_->target_base;
  info_.syscall_gadget = rw_->syscall_gadget;
  info_.park_entry = rw_->park_entry;
  info_.tid_address_offset = rw_->tid_address_offset;
}

Status Helper::open() {
  std::string mem = proc::proc_path(target_, "mem");
  mem_.reset(::open(mem.c_str(), O_RDWR | O_CLOEXEC));
  if (!mem_) return proc::proc_error(target_, "mem", "open", errno);
  CKPT_TRY_ASSIGN(auto scanner, PageScanner::open(target_));
  scanner_ = std::make_unique<PageScanner>(std::move(scanner));
  copy_buf_.assign(8 << 20, 0);
  publish_status();
  return {};
}

void Helper::answer(Answer a, int result, const Error* err, uint64_t id) {
  Reply& rep = rw_->rep;
  rep.answer = static_cast<uint32_t>(a);
  rep.result = err ? -1 : result;
  rep.err = err ? (err->errnum > 0 ? err->errnum : EIO) : 0;
  copy_message(rep, err ? std::string_view(err->message) : std::string_view());
  // Last: the id is what the waiting thread looks at.
  std::atomic_ref<uint64_t>(rep.id).store(id ? id : request_id_);
}

void Helper::handle() {
  Request req = rw_->req;
  request_id_ = req.id;
  Op op = static_cast<Op>(req.op);
  auto finish = [this](Status st) {
    if (st) {
      answer(Answer::done, 0, nullptr);
    } else {
      answer(Answer::done, -1, &st.error());
    }
  };
  switch (op) {
    case Op::hello:
      answer(Answer::done, 0, nullptr);
      break;
    case Op::checkpoint: {
      auto r = checkpoint(req);
      if (!r) {
        Error e = r.error().wrap("tsetjmp");
        answer(Answer::done, -1, &e);
      }
      break;  // a successful checkpoint answers before letting the threads go
    }
    case Op::rollback: {
      auto r = rollback(req);
      if (!r) {
        Error e = r.error().wrap(fmt::format("tlongjmp({})", req.arg));
        // The thread that asked may be gone (ended as part of the rollback): say it here too.
        if (e.errnum != EINVAL && e.errnum != EAGAIN)
          log::warn("rollback", "pid {}: {}", target_, e.message);
        answer(Answer::done, -1, &e);
      }
      break;
    }
    case Op::persist:
      finish(persist(req));
      break;
    case Op::cache_in:
      finish(cache_in(req));
      break;
    case Op::cache_out:
      finish(cache_out(req));
      break;
    case Op::pin:
    case Op::unpin:
      finish(pin(req, op == Op::pin));
      break;
    case Op::set_keep:
      finish(set_keep(req));
      break;
    default: {
      Error e = make_error(fmt::format("unknown request {}", req.op), EINVAL);
      answer(Answer::done, -1, &e);
    }
  }
  publish_status();
}

void Helper::after_answer() {
  for (auto& c : to_drop_) {
    c->snapshot.kill();
    reap_later(c->snapshot.pid);
  }
  to_drop_.clear();
  publish_status();
}

void Helper::shutdown() {
  for (auto& c : kept_) c->snapshot.kill();
  for (auto& c : to_drop_) c->snapshot.kill();
}

void Helper::reap_later(pid_t pid) {
  SharedStatus& s = ro_->status;
  s.reap[s.reap_count % kReapRing] = pid;
  std::atomic_ref<uint64_t>(s.reap_count).fetch_add(1);
}

void Helper::publish_status() {
  SharedStatus& s = ro_->status;
  s.numchkpts = next_id_ - 1;
  s.kept = static_cast<int32_t>(kept_.size());
  s.current_state = current_state_;
  s.keep_limit = keep_;
  s.newest = kept_.empty() ? 0 : kept_.back()->id;
}

Checkpoint* Helper::find(int id) {
  if (id == 0) return kept_.empty() ? nullptr : kept_.back().get();
  for (auto& c : kept_)
    if (c->id == id) return c.get();
  return nullptr;
}

void Helper::drop(std::unique_ptr<Checkpoint> c) {
  log::debug("rollback", "dropping checkpoint {} (snapshot {})", c->id, c->snapshot.pid);
  to_drop_.push_back(std::move(c));
}

void Helper::apply_retention() {
  auto unpinned = [this] {
    return std::count_if(kept_.begin(), kept_.end(), [](auto& c) { return !c->pinned; });
  };
  while (unpinned() > keep_) {
    auto it = std::find_if(kept_.begin(), kept_.end(), [](auto& c) { return !c->pinned; });
    drop(std::move(*it));
    kept_.erase(it);
  }
}

Status Helper::track_new_mappings(const std::vector<proc::MapEntry>& maps) {
  CKPT_TRY_ASSIGN(RangeSet loose, scanner_->unprotected(tracked_ranges(maps)));
  if (loose.empty()) return {};
  uint64_t failed = register_for_tracking(uffd_, loose, maps);
  if (failed)
    log::debug("rollback", "pid {}: {} KiB of memory not tracked (always restored)", target_,
               failed >> 10);
  return {};
}

Result<int> Helper::checkpoint(const Request& req) {
  if (next_id_ == INT_MAX) return make_error("no checkpoint descriptor left", EOVERFLOW);
  StepTimer timer("checkpoint");
  CKPT_TRY_ASSIGN(Freezer fz, Freezer::freeze(target_));
  timer.step("freeze");
  FrozenThread* caller = fz.find(req.tid);
  if (!caller) return errorf("thread {} is not a thread of pid {}", req.tid, target_);
  // Registering may split or merge mappings, so the mappings are read after it: the record must
  // match the snapshot, which is forked afterwards.
  CKPT_TRY_ASSIGN(auto before, proc::read_maps(target_));
  CKPT_TRY(track_new_mappings(before));
  timer.step("track");
  auto c = std::make_unique<Checkpoint>();
  CKPT_TRY_ASSIGN(c->maps, proc::read_maps(target_));
  for (auto& t : fz.threads()) {
    const stack_t* alt = (t.get() == caller && req.altstack_valid) ? &req.altstack : nullptr;
    CKPT_TRY_ASSIGN(auto rec, capture_thread(*t, info_, alt));
    c->threads.push_back(std::move(rec));
  }
  timer.step("threads");
  CKPT_TRY_ASSIGN(c->fds, list_fd_records(target_));
  timer.step("fds");
  CKPT_TRY_ASSIGN(c->heap_end, heap_end(target_, c->maps));
  if (req.handlers_valid) {
    std::copy(std::begin(req.handlers), std::end(req.handlers), c->handlers.begin());
    c->handlers_valid = true;
  }
  CKPT_TRY_ASSIGN(c->snapshot, create_snapshot(*caller, info_, self_));
  timer.step("snapshot");
  auto written = scanner_->take_written(tracked_ranges(c->maps));
  timer.step("protect");
  if (!written) {
    c->snapshot.kill();
    reap_later(c->snapshot.pid);
    return std::move(written).error();
  }
  for (auto& k : kept_) k->dirty = range_union(k->dirty, *written);
  c->id = next_id_++;
  c->caller = req.tid;
  c->request = req.id;
  int id = c->id;
  log::debug("rollback", "checkpoint {}: snapshot {}, {} threads, {} mappings, {} KiB written", id,
             c->snapshot.pid, c->threads.size(), c->maps.size(), range_bytes(*written) >> 10);
  kept_.push_back(std::move(c));
  current_state_ = id;
  ro_->status.rolled_back = 0;
  apply_retention();
  answer(Answer::done, id, nullptr);
  publish_status();
  Status released = fz.release(false);
  if (!released) log::warn("rollback", "pid {}: {}", target_, released.error().message);
  timer.step("release");
  return id;
}

Status Helper::persist(const Request& req) {
  if (req.addr == 0) return make_error("persist: NULL address", EINVAL);
  auto it = std::find_if(persist_.begin(), persist_.end(),
                         [&](const PersistRange& p) { return p.addr == req.addr; });
  if (req.size == 0) {
    if (it == persist_.end())
      return make_error(fmt::format("persist: no range starts at {:#x}", req.addr), EINVAL);
    persist_.erase(it);
    return {};
  }
  uint64_t total = req.size;
  for (auto& p : persist_)
    if (p.addr != req.addr) total += p.size;
  if (total > kMaxPersistBytes || req.size > kMaxPersistBytes)
    return make_error("persist: more than 64 MiB in all", ENOSPC);
  if (it != persist_.end()) {
    it->size = req.size;
    return {};
  }
  if (persist_.size() >= kMaxPersistRanges) return make_error("persist: 64 ranges already", ENOSPC);
  persist_.push_back({req.addr, req.size});
  return {};
}

Status Helper::cache_in(const Request& req) {
  if (req.addr == 0) return make_error("cache: NULL address", EINVAL);
  uint64_t old = cache_.count(req.addr) ? cache_[req.addr].size() : 0;
  if (req.size > kMaxCacheBytes || cache_bytes_ - old + req.size > kMaxCacheBytes)
    return make_error("cache: more than 64 MiB in all", ENOSPC);
  std::vector<uint8_t> data(req.size);
  CKPT_TRY(read_remote(target_, req.addr, data.data(), data.size()));
  cache_bytes_ = cache_bytes_ - old + req.size;
  cache_[req.addr] = std::move(data);
  return {};
}

Status Helper::cache_out(const Request& req) {
  if (req.addr == 0) return make_error("cache: NULL address", EINVAL);
  auto it = cache_.upper_bound(req.addr);
  if (it == cache_.begin())
    return make_error(fmt::format("cache: nothing cached at {:#x}", req.addr), EINVAL);
  --it;
  uint64_t off = req.addr - it->first;
  if (off > it->second.size() || req.size > it->second.size() - off)
    return make_error(
        fmt::format("cache: [{:#x}, +{}) is not inside a cached range", req.addr, req.size),
        EINVAL);
  return write_remote(target_, mem_.get(), req.addr, it->second.data() + off, req.size);
}

Status Helper::pin(const Request& req, bool on) {
  Checkpoint* c = req.arg > 0 && req.arg < INT_MAX ? find(static_cast<int>(req.arg)) : nullptr;
  if (!c) return make_error(fmt::format("checkpoint {} is not kept", req.arg), EINVAL);
  if (on && !c->pinned) {
    auto pinned = std::count_if(kept_.begin(), kept_.end(), [](auto& k) { return k->pinned; });
    if (pinned >= kMaxPinned) return make_error("32 checkpoints are pinned already", ENOSPC);
  }
  c->pinned = on;
  if (!on) apply_retention();
  return {};
}

Status Helper::set_keep(const Request& req) {
  if (req.arg < 1 || req.arg > kMaxKeep)
    return make_error(fmt::format("keep {}: must be 1 to {}", req.arg, kMaxKeep), EINVAL);
  keep_ = static_cast<int>(req.arg);
  apply_retention();
  return {};
}

int run_helper(int memfd, int sock, int uffd) {
  void* base = ::mmap(nullptr, kSharedSize, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  ::close(memfd);
  if (base == MAP_FAILED) return 1;
  RwArea* rw = rw_area(base);
  if (rw->magic != kMagic) return 1;
  ::prctl(PR_SET_NAME, "ckpt-rollback", 0, 0, 0);
  // The program's stdio must not stay open because of us (a reader waiting for the end of its
  // output would wait for ours too); stderr is kept only to log when asked to.
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd = 0; fd <= 2 && null >= 0; ++fd)
    if (fd != 2 || !std::getenv("CKPT_LOG")) ::dup3(null, fd, 0);
  if (null > 2) ::close(null);
  pid_t target = rw->target_pid;
  ScopedFd target_fd(static_cast<int>(::syscall(SYS_pidfd_open, target, 0)));
  if (!target_fd) return 1;
  Helper h(target, base, uffd);
  Status opened = h.open();
  if (!opened) log::error("rollback", "helper of pid {}: {}", target, opened.error().message);
  rw->helper_pid = ::getpid();
  for (;;) {
    pollfd fds[2] = {{sock, POLLIN, 0}, {target_fd.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;  // the target ended
    char buf[64];
    ssize_t n = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;  // closed or exec'd
    if (n < 0) continue;
    if (opened) {
      h.handle();
    } else {
      Reply& rep = rw->rep;
      rep.answer = static_cast<uint32_t>(Answer::done);
      rep.result = -1;
      rep.err = opened.error().errnum > 0 ? opened.error().errnum : EIO;
      copy_message(rep, opened.error().message);
      std::atomic_ref<uint64_t>(rep.id).store(rw->req.id);
    }
    std::atomic_ref<uint32_t>(rw->seq).fetch_add(1);
    ::syscall(SYS_futex, &rw->seq, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
    if (opened) h.after_answer();
  }
  h.shutdown();
  return 0;
}

}  // namespace ckpt::rollback
