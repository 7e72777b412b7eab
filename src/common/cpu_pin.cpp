#include "common/cpu_pin.hpp"

#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iterator>
#include <string_view>
#include <utility>

namespace ckpt {

struct CpuPinLedger::Entry {
  std::atomic<pid_t> tid;  // 0: free
  uint32_t words;
  uint64_t mask[16];  // 1024 CPUs; a thread with a longer mask is not pinned under a ledger
};

namespace {

constexpr size_t kMaskBytes = 1024;  // 8192 CPUs
constexpr size_t kLedgerEntries = 4096;
constexpr size_t kLedgerBytes = kLedgerEntries * sizeof(CpuPinLedger::Entry);
CpuPinLedger::Entry* ledger_in_use = nullptr;
std::atomic<bool> pinning_off{false};

// A free slot of the ledger in use noting `tid` and its mask: -1 without a ledger, -2 when the
// ledger cannot note it (then it must not be pinned).
long note(pid_t tid, const std::vector<uint64_t>& mask) {
  if (!ledger_in_use) return -1;
  if (mask.size() > std::size(ledger_in_use[0].mask)) return -2;
  for (size_t i = 0; i < kLedgerEntries; ++i) {
    auto& e = ledger_in_use[i];
    pid_t free = 0;
    if (!e.tid.compare_exchange_strong(free, -1)) continue;
    e.words = static_cast<uint32_t>(mask.size());
    std::copy(mask.begin(), mask.end(), e.mask);
    e.tid.store(tid, std::memory_order_release);
    return static_cast<long>(i);
  }
  return -2;
}

void strike(long slot) {
  if (slot >= 0 && ledger_in_use) ledger_in_use[slot].tid.store(0, std::memory_order_release);
}

bool get_mask(pid_t tid, std::vector<uint64_t>& mask) {
  mask.assign(kMaskBytes / 8, 0);
  long n = ::syscall(SYS_sched_getaffinity, tid, kMaskBytes, mask.data());
  if (n <= 0) return false;
  mask.resize(static_cast<size_t>(n + 7) / 8);
  return true;
}

bool set_mask(pid_t tid, const std::vector<uint64_t>& mask) {
  return ::syscall(SYS_sched_setaffinity, tid, mask.size() * 8, mask.data()) == 0;
}

}  // namespace

CpuPin CpuPin::pin(pid_t tid, int cpu, bool own, const std::vector<uint64_t>* within) {
  CpuPin p;
  if (cpu < 0) return p;
  std::vector<uint64_t> before;
  if (!get_mask(tid, before)) return p;
  const std::vector<uint64_t>& may = within ? *within : before;
  size_t word = static_cast<size_t>(cpu) / 64;
  uint64_t bit = uint64_t{1} << (cpu % 64);
  if (word >= before.size() || word >= may.size() || !(may[word] & bit)) return p;
  std::vector<uint64_t> only(before.size(), 0);
  only[word] = bit;
  if (only == before) return p;
  long slot = own ? -1 : note(tid, before);
  if (slot == -2) return p;
  if (!set_mask(tid, only)) {
    strike(slot);
    return p;
  }
  p.tid_ = tid;
  p.before_ = std::move(before);
  p.slot_ = slot;
  return p;
}

CpuPin::CpuPin(CpuPin&& o) noexcept
    : tid_(std::exchange(o.tid_, 0)),
      before_(std::move(o.before_)),
      slot_(std::exchange(o.slot_, -1)) {}

CpuPin& CpuPin::operator=(CpuPin&& o) noexcept {
  if (this != &o) {
    unpin();
    tid_ = std::exchange(o.tid_, 0);
    before_ = std::move(o.before_);
    slot_ = std::exchange(o.slot_, -1);
  }
  return *this;
}

void CpuPin::unpin() {
  // A thread gone meanwhile (ESRCH) has nothing to give back.
  if (tid_ != 0) (void)set_mask(tid_, before_);
  forget();
}

std::vector<uint64_t> CpuPin::release() {
  forget();
  return std::move(before_);
}

void CpuPin::forget() {
  strike(slot_);
  slot_ = -1;
  tid_ = 0;
}

CpuPinLedger CpuPinLedger::create() {
  CpuPinLedger l;
  void* m =
      ::mmap(nullptr, kLedgerBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m != MAP_FAILED) l.entries_ = static_cast<Entry*>(m);
  return l;
}

CpuPinLedger::~CpuPinLedger() {
  if (entries_) ::munmap(entries_, kLedgerBytes);
}

CpuPinLedger::CpuPinLedger(CpuPinLedger&& o) noexcept
    : entries_(std::exchange(o.entries_, nullptr)) {}

void CpuPinLedger::use_here() {
  if (entries_)
    ledger_in_use = entries_;
  else
    turn_off_cpu_pinning();  // nowhere to note the pins: none
}

size_t CpuPinLedger::undo() {
  size_t n = 0;
  for (size_t i = 0; entries_ && i < kLedgerEntries; ++i) {
    auto& e = entries_[i];
    pid_t tid = e.tid.load(std::memory_order_acquire);
    if (tid <= 0) continue;
    (void)set_mask(tid, std::vector<uint64_t>(e.mask, e.mask + e.words));
    e.tid.store(0);
    ++n;
  }
  return n;
}

int current_cpu() {
  return ::sched_getcpu();
}

std::vector<int> allowed_cpus() {
  std::vector<int> out;
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

bool cpu_pinning_enabled() {
  if (pinning_off.load()) return false;
  const char* off = std::getenv("CKPT_NO_CPU_PIN");
  return !(off && std::string_view(off) == "1");
}

void turn_off_cpu_pinning() {
  pinning_off = true;
}

}  // namespace ckpt
