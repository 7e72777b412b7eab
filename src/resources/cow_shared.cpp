#include "resources/cow_shared.hpp"

#include <fcntl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include "common/log.hpp"
#include "common/scoped_fd.hpp"
#include "image/chain.hpp"
#include "resources/context.hpp"
#include "resources/memory.hpp"

namespace ckpt::cow_shared {
namespace {

constexpr size_t kSkipBuffer = 1 << 20;

// How a root mapping is shared by the other live processes of the image: not at all, by a
// mapping at the same place that can share it, or by one that stores pages only in the root's
// section (`from_root`), which the restore must then find somewhere.
enum class Sharing { none, shared, from_root };

Sharing sharing_of(const schema::ImageRoot& image, const schema::Vma& v) {
  Sharing out = Sharing::none;
  for (size_t i = 1; i < image.processes.size(); ++i) {
    const auto& p = image.processes[i];
    if (p.zombie) continue;
    for (auto& w : p.memory.vmas) {
      if (!holds(v, w) || !shareable(w)) continue;
      if (!w.from_root.empty()) return Sharing::from_root;
      out = Sharing::shared;
    }
  }
  return out;
}

bool is_file(const schema::Vma& v) {
  return v.kind == "file";
}

// Maps `v` at its own address in this process (a file from its path, as the restore checked
// it); false when something of ours is there or the file cannot be opened.
bool place(const schema::Vma& v) {
  // Tests reach the restore's other path (the restorer's own memory in the way) with it.
  static const bool never = std::getenv("CKPT_FAULT_NO_PREMAP") != nullptr;
  if (never) return false;
  int flags = MAP_PRIVATE | MAP_FIXED_NOREPLACE | (is_file(v) ? 0 : MAP_ANONYMOUS);
  if (v.has_flag("nr")) flags |= MAP_NORESERVE;
  ScopedFd file;
  if (is_file(v)) {
    file = ScopedFd(::open(v.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!file) return false;  // the build maps it on its own and says what is wrong
  }
  void* want = reinterpret_cast<void*>(v.start);
  void* got = ::mmap(want, v.end - v.start, PROT_READ | PROT_WRITE, flags,
                     is_file(v) ? file.get() : -1, is_file(v) ? static_cast<off_t>(v.offset) : 0);
  if (got == want) return true;
  int err = got == MAP_FAILED ? errno : EEXIST;
  if (got != MAP_FAILED) ::munmap(got, v.end - v.start);  // a kernel without NOREPLACE
  // EEXIST: the restorer's own code or data is there.
  log::debug("memory", "{:#x}-{:#x} of the root is restored copied, not shared: mmap: {}", v.start,
             v.end, std::strerror(err));
  return false;
}

// Reads the root's pages section: the ranges of placed mappings straight into them, those of
// mappings kept aside into `aside`, the rest read and dropped (the section is one stream,
// checked to its end).
Status fill(const image::Store& store, const image::GenerationInfo& gen,
            const schema::ProcessRecord& root, const std::vector<const schema::Vma*>& placed,
            const std::vector<const schema::Vma*>& kept_aside,
            std::map<uint64_t, std::vector<std::byte>>& aside) {
  std::string name = section_prefix(root.pid, true) + memory::kPagesSection;
  CKPT_TRY_ASSIGN(auto reader, store.open_section(gen, name));
  std::unique_ptr<std::byte[]> skip(new std::byte[kSkipBuffer]);
  for (auto& v : root.memory.vmas) {
    bool mine = std::find(placed.begin(), placed.end(), &v) != placed.end();
    bool set_aside = std::find(kept_aside.begin(), kept_aside.end(), &v) != kept_aside.end();
    for (auto& r : v.pages) {
      if (r.start < v.start || r.end > v.end || r.start >= r.end)
        return errorf("section {}: pages {:#x}-{:#x} lie outside their mapping", name, r.start,
                      r.end);
      std::byte* dest = nullptr;
      if (mine) {
        dest = reinterpret_cast<std::byte*>(r.start);
        (void)::madvise(dest, r.end - r.start, MADV_POPULATE_WRITE);
      } else if (set_aside) {
        auto& copy = aside[r.start];
        copy.resize(r.end - r.start);
        dest = copy.data();
      }
      for (uint64_t at = r.start; at < r.end;) {
        size_t want = dest ? r.end - at : std::min<uint64_t>(r.end - at, kSkipBuffer);
        std::span<std::byte> to(dest ? dest + (at - r.start) : skip.get(), want);
        CKPT_TRY_ASSIGN(size_t n, reader->read(to));
        if (n == 0) return errorf("section {} ends early at {:#x}", name, at);
        at += n;
      }
    }
  }
  std::byte extra;
  CKPT_TRY_ASSIGN(size_t left, reader->read({&extra, 1}));
  if (left != 0) return errorf("section {} has more data than its mappings", name);
  return {};
}

}  // namespace

bool shareable(const schema::Vma& v) {
  bool anonymous = v.kind == "anonymous" || v.kind == "heap" || v.kind == "stack";
  bool file = is_file(v) && !v.deleted && !v.deleted_file && !v.path.empty();
  return (anonymous || file) && !v.shared && !v.shm && !v.sysv_shm && !v.has_flag("dc") &&
         !v.has_flag("wf") && !v.has_flag("gd") && v.end > v.start;
}

Base::Base(Base&& o) noexcept : areas_(std::move(o.areas_)), aside_(std::move(o.aside_)) {
  o.areas_.clear();
  o.aside_.clear();
}

Base& Base::operator=(Base&& o) noexcept {
  if (this != &o) {
    release();
    areas_ = std::move(o.areas_);
    aside_ = std::move(o.aside_);
    o.areas_.clear();
    o.aside_.clear();
  }
  return *this;
}

Base::~Base() {
  release();
}

void Base::release() {
  for (auto& a : areas_) ::munmap(reinterpret_cast<void*>(a.start()), a.end() - a.start());
  areas_.clear();
  aside_.clear();
}

const Area* Base::find(const schema::Vma& v) const {
  if (!shareable(v)) return nullptr;
  for (auto& a : areas_)
    if (holds(*a.root, v)) return &a;
  return nullptr;
}

uint64_t Base::bytes() const {
  uint64_t n = 0;
  for (auto& a : areas_)
    for (auto& r : a.filled()) n += r.end - r.start;
  for (auto& [start, copy] : aside_) n += copy.size();
  return n;
}

Status Base::write_aside(pid_t pid, const std::vector<schema::Range>& ranges) const {
  for (auto& r : ranges) {
    for (uint64_t at = r.start; at < r.end;) {
      auto it = aside_.upper_bound(at);
      if (it == aside_.begin() || at >= std::prev(it)->first + std::prev(it)->second.size())
        return errorf(
            "restore pid {}: page {:#x} is saved only as the root's, which has no page there", pid,
            at);
      --it;
      uint64_t end = std::min<uint64_t>(r.end, it->first + it->second.size());
      CKPT_TRY(write_remote(pid, at, it->second.data() + (at - it->first), end - at));
      at = end;
    }
  }
  return {};
}

bool holds(const schema::Vma& root, const schema::Vma& child) {
  return root.start <= child.start && child.end <= root.end && root.kind == child.kind &&
         root.path == child.path &&
         (root.kind != "file" || child.offset == root.offset + (child.start - root.start)) &&
         root.has_flag("nr") == child.has_flag("nr");
}

Result<Base> premap(const image::Store& store, const image::GenerationInfo& gen,
                    const schema::ImageRoot& image) {
  Base base;
  if (image.processes.size() < 2 || image.processes[0].zombie || image::is_incremental(gen))
    return base;
  const schema::ProcessRecord& root = image.processes[0];
  std::vector<const schema::Vma*> placed, kept_aside;
  for (auto& v : root.memory.vmas) {
    Sharing sharing = shareable(v) ? sharing_of(image, v) : Sharing::none;
    if (sharing == Sharing::none) continue;
    if (place(v)) {
      placed.push_back(&v);
      base.areas_.push_back({&v});
    } else if (sharing == Sharing::from_root) {
      kept_aside.push_back(&v);
    }
  }
  if (placed.empty() && kept_aside.empty()) return base;
  Status filled = fill(store, gen, root, placed, kept_aside, base.aside_);
  if (!filled.ok()) return filled.error().wrap("restore memory shared with the root");
  log::debug("memory", "{} mappings of the root ({} bytes of pages) shared with its children",
             placed.size(), base.bytes());
  return base;
}

}  // namespace ckpt::cow_shared
