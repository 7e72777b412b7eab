#pragma once
// The vdso: the kernel's code a process calls for clock_gettime and friends without a system
// call. A restored process keeps pointers into the vdso it had (libc looked its functions up at
// start). On the same kernel the restorer's own vdso is byte for byte that code and is moved to
// the old address. On another kernel (or with --force-vdso-proxy) the running kernel's vdso goes
// wherever there is room, and the old address gets a proxy: the old vdso's bytes, each of its
// functions overwritten with a jump to the same function of the new one (as CRIU's vdso proxy
// does). Symbols come from the vdso's own ELF dynamic symbol table.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace ckpt::vdso {

struct Symbol {
  std::string name;
  uint64_t offset = 0;  // from the start of the vdso mapping
  uint64_t size = 0;
};

// The function symbols of a vdso image (an ELF shared object as mapped), bounds-checked: a
// damaged image is an error, never a read outside `image`.
Result<std::vector<Symbol>> functions(std::span<const uint8_t> image);

// The old vdso's bytes with every function that the new vdso also has replaced by a jump to it
// (`new_base` is where the new vdso is mapped). Functions the new vdso lacks are named in
// `missing`; they keep the old code.
Result<std::vector<uint8_t>> make_proxy(std::span<const uint8_t> old_image,
                                        std::span<const uint8_t> new_image, uint64_t new_base,
                                        std::vector<std::string>* missing);

}  // namespace ckpt::vdso
