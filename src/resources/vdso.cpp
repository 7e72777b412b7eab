#include "resources/vdso.hpp"

#include <elf.h>

#include <cstring>
#include <map>

namespace ckpt::vdso {
namespace {

// A vdso has a handful of sections and symbols; more is damage.
constexpr size_t kMaxSections = 256;
constexpr size_t kMaxSymbols = 4096;

template <class T>
Result<T> read_at(std::span<const uint8_t> img, uint64_t off, const char* what) {
  if (off > img.size() || img.size() - off < sizeof(T))
    return errorf("vdso image: {} at offset {} lies outside its {} bytes", what, off, img.size());
  T t;
  std::memcpy(&t, img.data() + off, sizeof(T));
  return t;
}

Result<Elf64_Ehdr> header(std::span<const uint8_t> img) {
  CKPT_TRY_ASSIGN(auto h, read_at<Elf64_Ehdr>(img, 0, "the ELF header"));
  if (std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0 || h.e_ident[EI_CLASS] != ELFCLASS64)
    return make_error("vdso image: not a 64-bit ELF object");
  if (h.e_shentsize != sizeof(Elf64_Shdr) || h.e_shnum > kMaxSections ||
      (h.e_phnum > 0 && h.e_phentsize != sizeof(Elf64_Phdr)))
    return make_error("vdso image: unexpected ELF header sizes");
  return h;
}

// Symbol values are addresses as linked; the mapping starts at the first loaded segment.
Result<uint64_t> load_bias(std::span<const uint8_t> img, const Elf64_Ehdr& h) {
  for (uint64_t i = 0; i < h.e_phnum; ++i) {
    CKPT_TRY_ASSIGN(
        auto ph, read_at<Elf64_Phdr>(img, h.e_phoff + i * sizeof(Elf64_Phdr), "a program header"));
    if (ph.p_type == PT_LOAD) return ph.p_vaddr - ph.p_offset;
  }
  return make_error("vdso image: no loaded segment");
}

Result<std::string> name_at(std::span<const uint8_t> img, const Elf64_Shdr& strtab,
                            uint32_t index) {
  if (strtab.sh_offset > img.size() || img.size() - strtab.sh_offset < strtab.sh_size ||
      index >= strtab.sh_size)
    return make_error("vdso image: a symbol name lies outside its string table");
  auto* start = reinterpret_cast<const char*>(img.data() + strtab.sh_offset + index);
  size_t room = strtab.sh_size - index;
  size_t len = ::strnlen(start, room);
  if (len == room) return make_error("vdso image: an unterminated symbol name");
  return std::string(start, len);
}

Result<std::vector<Symbol>> read_dynsym(std::span<const uint8_t> img, const Elf64_Ehdr& h,
                                        const Elf64_Shdr& dynsym, uint64_t bias) {
  if (dynsym.sh_link >= h.e_shnum) return make_error("vdso image: bad symbol table link");
  CKPT_TRY_ASSIGN(auto strtab,
                  read_at<Elf64_Shdr>(img, h.e_shoff + dynsym.sh_link * sizeof(Elf64_Shdr),
                                      "the string table header"));
  uint64_t count = dynsym.sh_size / sizeof(Elf64_Sym);
  if (count > kMaxSymbols) return make_error("vdso image: too many symbols");
  std::vector<Symbol> out;
  for (uint64_t i = 0; i < count; ++i) {
    CKPT_TRY_ASSIGN(auto sym,
                    read_at<Elf64_Sym>(img, dynsym.sh_offset + i * sizeof(Elf64_Sym), "a symbol"));
    if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF) continue;
    uint64_t offset = sym.st_value - bias;
    if (offset > img.size() || img.size() - offset < sym.st_size)
      return errorf("vdso image: function at {:#x} lies outside the image", sym.st_value);
    CKPT_TRY_ASSIGN(std::string name, name_at(img, strtab, sym.st_name));
    out.push_back({std::move(name), offset, sym.st_size});
  }
  return out;
}

// movabs $target, %rax; jmp *%rax
constexpr size_t kJumpSize = 12;
void write_jump(uint8_t* at, uint64_t target) {
  at[0] = 0x48;
  at[1] = 0xb8;
  std::memcpy(at + 2, &target, sizeof(target));
  at[10] = 0xff;
  at[11] = 0xe0;
}

}  // namespace

Result<std::vector<Symbol>> functions(std::span<const uint8_t> image) {
  CKPT_TRY_ASSIGN(Elf64_Ehdr h, header(image));
  CKPT_TRY_ASSIGN(uint64_t bias, load_bias(image, h));
  for (uint64_t i = 0; i < h.e_shnum; ++i) {
    CKPT_TRY_ASSIGN(auto sh, read_at<Elf64_Shdr>(image, h.e_shoff + i * sizeof(Elf64_Shdr),
                                                 "a section header"));
    if (sh.sh_type == SHT_DYNSYM) return read_dynsym(image, h, sh, bias);
  }
  return make_error("vdso image: no dynamic symbol table");
}

Result<std::vector<uint8_t>> make_proxy(std::span<const uint8_t> old_image,
                                        std::span<const uint8_t> new_image, uint64_t new_base,
                                        std::vector<std::string>* missing) {
  CKPT_TRY_ASSIGN(auto old_functions, functions(old_image));
  CKPT_TRY_ASSIGN(auto new_functions, functions(new_image));
  std::map<std::string, uint64_t> target;
  for (auto& f : new_functions) target[f.name] = new_base + f.offset;
  std::vector<uint8_t> out(old_image.begin(), old_image.end());
  for (auto& f : old_functions) {
    auto it = target.find(f.name);
    if (it == target.end()) {
      if (missing) missing->push_back(f.name);
      continue;
    }
    if (f.size < kJumpSize)
      return errorf("vdso function {} is {} bytes, too short for a jump", f.name, f.size);
    write_jump(out.data() + f.offset, it->second);
  }
  return out;
}

}  // namespace ckpt::vdso
