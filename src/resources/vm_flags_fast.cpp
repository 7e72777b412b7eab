// vm_flags::read_fast(): VmFlags from a BPF iterator, translated by a table checked against smaps.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "common/log.hpp"
#include "common/scoped_fd.hpp"
#include "common/scoped_mapping.hpp"
#include "proc/vma_iter.hpp"
#include "resources/vm_flags.hpp"

namespace ckpt::vm_flags {
namespace {

using proc::MapEntry;
using proc::RawVma;
using proc::VmFlag;
using proc::VmFlags;

// The VM_* bits of x86_64 kernels (include/linux/mm.h) and the code smaps prints for each. Only
// the bits the check (Reader::make) saw agree with smaps are ever used.
constexpr std::pair<unsigned, VmFlag> kBits[] = {
    {0, VmFlag::rd},  {1, VmFlag::wr},  {2, VmFlag::ex},  {3, VmFlag::sh},  {4, VmFlag::mr},
    {5, VmFlag::mw},  {6, VmFlag::me},  {7, VmFlag::ms},  {8, VmFlag::gd},  {9, VmFlag::um},
    {10, VmFlag::pf}, {12, VmFlag::uw}, {13, VmFlag::lo}, {14, VmFlag::io}, {15, VmFlag::sr},
    {16, VmFlag::rr}, {17, VmFlag::dc}, {18, VmFlag::de}, {19, VmFlag::lf}, {20, VmFlag::ac},
    {21, VmFlag::nr}, {22, VmFlag::ht}, {23, VmFlag::sf}, {24, VmFlag::ar}, {25, VmFlag::wf},
    {26, VmFlag::dd}, {28, VmFlag::mm}, {29, VmFlag::hg}, {30, VmFlag::nh}, {31, VmFlag::mg},
    {37, VmFlag::ss}, {41, VmFlag::ui}, {42, VmFlag::sl}};

constexpr uint64_t kTableBits = [] {
  uint64_t all = 0;
  for (auto [bit, flag] : kBits) all |= uint64_t{1} << bit;
  return all;
}();

VmFlags translate(uint64_t raw) {
  VmFlags out;
  for (auto [bit, flag] : kBits)
    if (raw & (uint64_t{1} << bit)) out.set(flag);
  return out;
}

constexpr size_t kPage = 4096;

// Mappings of ckpt's own, one for each flag it restores and what else it can make cheaply, kept
// while the table is checked. Probes the kernel refuses (no KSM, no userfaultfd) are left out:
// their bits then stay unchecked.
class Probes {
 public:
  Probes() {
    // Probe pages between inaccessible ones, so that no two merge into one mapping.
    constexpr size_t kCount = 13;
    area_ = ScopedMapping::anonymous((2 * kCount + 1) * kPage);
    if (!area_.data()) return;
    ::mprotect(area_.data(), area_.size(), PROT_NONE);
    size_t next = 0;
    auto probe = [&](int prot, const std::function<void(char*)>& make) {
      char* p = area_.data() + (2 * next++ + 1) * kPage;
      if (::mprotect(p, kPage, prot) == 0) make(p);
    };
    auto advise = [&](int advice) {
      probe(PROT_READ | PROT_WRITE, [advice](char* p) { ::madvise(p, kPage, advice); });
    };
    for (int advice : {MADV_DONTFORK, MADV_WIPEONFORK, MADV_DONTDUMP, MADV_HUGEPAGE,
                       MADV_NOHUGEPAGE, MADV_MERGEABLE, MADV_SEQUENTIAL, MADV_RANDOM})
      advise(advice);
    probe(PROT_READ | PROT_EXEC, [](char*) {});
    // The system call, not a sanitizer's interceptor.
    probe(PROT_READ | PROT_WRITE, [](char* p) { ::syscall(SYS_mlock, p, kPage); });
    probe(PROT_READ | PROT_WRITE, [](char* p) { ::syscall(SYS_mlock2, p, kPage, MLOCK_ONFAULT); });
    register_with_userfaultfd(probe);
    for (int flags : {MAP_SHARED, MAP_PRIVATE | MAP_GROWSDOWN, MAP_PRIVATE | MAP_NORESERVE})
      own_.push_back(ScopedMapping::map(kPage, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS));
  }

 private:
  // Registered, never touched: a fault there would wait for an answer nobody gives.
  void register_with_userfaultfd(auto& probe) {
    uffd_.reset(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
    uffdio_api api{.api = UFFD_API, .features = 0, .ioctls = 0};
    if (!uffd_ || ::ioctl(uffd_.get(), UFFDIO_API, &api) != 0) return;
    for (auto mode : {UFFDIO_REGISTER_MODE_MISSING, UFFDIO_REGISTER_MODE_WP})
      probe(PROT_READ | PROT_WRITE, [&](char* p) {
        uffdio_register reg{
            .range = {reinterpret_cast<uint64_t>(p), kPage}, .mode = mode, .ioctls = 0};
        ::ioctl(uffd_.get(), UFFDIO_REGISTER, &reg);
      });
  }

  ScopedMapping area_;
  std::vector<ScopedMapping> own_;
  ScopedFd uffd_;
};

// The loaded iterator and what the check found out.
struct Reader {
  proc::VmaIter iter;
  uint64_t checked = 0;             // bits seen to translate as smaps shows them
  std::optional<VmFlags> vsyscall;  // [vsyscall] is no mapping the iterator sees

  static Result<Reader> make();
};

// Every mapping of ckpt, probes and all, as smaps shows it and as the table translates the
// iterator's bits; a mapping with a bit the table has not is no evidence either way. A table
// that disagrees with smaps on any mapping is not used at all.
Result<Reader> Reader::make() {
  if (const char* v = std::getenv("CKPT_VM_FLAGS"); v && std::string_view(v) == "smaps")
    return make_error("CKPT_VM_FLAGS=smaps");
  Reader r;
  CKPT_TRY_ASSIGN(r.iter, proc::VmaIter::load());
  Probes probes;
  pid_t self = ::getpid();
  CKPT_TRY_ASSIGN(auto raw, r.iter.read(self));
  CKPT_TRY_ASSIGN(auto smaps, proc::read_smaps(self));
  size_t j = 0;
  for (const MapEntry& m : smaps) {
    if (m.kind == proc::MapKind::vsyscall) {
      r.vsyscall = m.vm_flags;
      continue;
    }
    // ckpt's own heap may have grown between the two reads: only a mapping both show alike
    // is evidence.
    while (j < raw.size() && raw[j].start < m.start) ++j;
    if (j == raw.size() || raw[j].start != m.start || raw[j].end != m.end) continue;
    if ((raw[j].flags & ~kTableBits) != 0) continue;
    VmFlags got = translate(raw[j].flags);
    if (!m.vm_flags || got.bits != m.vm_flags->bits || !m.vm_flags->unknown.empty())
      return errorf("mapping {:#x}-{:#x} of ckpt: vm_flags {:#x} is not what smaps shows", m.start,
                    m.end, raw[j].flags);
    r.checked |= raw[j].flags;
  }
  return r;
}

// Made at the first call, kept for the life of the process (a supervisor dumps many times).
const Reader* reader() {
  static std::once_flag once;
  static std::optional<Reader> made;
  std::call_once(once, [] {
    auto r = Reader::make();
    if (!r.ok()) {
      log::debug("memory", "VmFlags come from smaps: no BPF vma iterator ({})", r.error().message);
      return;
    }
    log::debug("memory", "VmFlags come from a BPF vma iterator (bits checked: {:#x})", r->checked);
    made = std::move(*r);
  });
  return made ? &*made : nullptr;
}

}  // namespace

void prepare_fast() {
  (void)reader();
}

Result<std::optional<std::vector<MapEntry>>> read_fast(pid_t pid) {
  using Found = std::optional<std::vector<MapEntry>>;
  const Reader* r = reader();
  if (!r) return Found();
  auto not_now = [pid](std::string_view why) {
    log::debug("memory", "pid {}: VmFlags read from smaps: {}", pid, why);
    return Found();
  };
  auto raw = r->iter.read(pid);
  if (!raw.ok()) return not_now(raw.error().message);
  CKPT_TRY_ASSIGN(auto maps, proc::read_maps(pid));
  size_t j = 0;
  for (MapEntry& m : maps) {
    if (m.kind == proc::MapKind::vsyscall) {
      if (!r->vsyscall) return not_now("[vsyscall], which ckpt has not");
      m.vm_flags = r->vsyscall;
      continue;
    }
    if (j == raw->size() || (*raw)[j].start != m.start || (*raw)[j].end != m.end)
      return not_now(
          fmt::format("mapping {:#x}-{:#x} changed between maps and the iterator", m.start, m.end));
    uint64_t bits = (*raw)[j++].flags;
    if (uint64_t unchecked = bits & ~r->checked; unchecked != 0)
      return not_now(fmt::format("mapping {:#x}-{:#x} has vm_flags bits {:#x}, not checked",
                                 m.start, m.end, unchecked));
    m.vm_flags = translate(bits);
  }
  if (j != raw->size()) return not_now("the iterator has mappings maps has not");
  return Found(std::move(maps));
}

}  // namespace ckpt::vm_flags
