// A whole restore reading a mutated image, up to the point where it would create a process: the
// image is written as a generation of a real store (on tmpfs) and restored with dry_run, which
// reads the section through the store, decodes and validates it, checks it against this machine
// (vdso, PIDs, credentials, mapped files) and plans the processes. Every input must end in a
// result or one error, never a crash or a hang. Input as in fuzz_image (odd first byte: edits of
// the sample image, whose vdso is made this machine's so that the checks after it are reached).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "common/checksum.hpp"
#include "image/schema/records.hpp"
#include "image/store.hpp"
#include "proc/maps.hpp"
#include "restore/restore.hpp"
#include "sample_image.hpp"

namespace {

ckpt::schema::ImageRoot here_sample() {
  auto image = ckpt::fuzz::sample_image();
  auto maps = ckpt::proc::read_maps(::getpid());
  if (maps.ok())
    for (auto& m : *maps)
      if (m.kind == ckpt::proc::MapKind::vdso)
        image.vdso.hash = ckpt::checksum64({reinterpret_cast<const std::byte*>(m.start), m.size()});
  return image;
}

std::vector<std::byte> input_image(const uint8_t* data, size_t size) {
  static const std::vector<std::byte> sample = ckpt::schema::encode_image(here_sample());
  if (size == 0 || !(data[0] & 1)) {
    auto* p = reinterpret_cast<const std::byte*>(data);
    return {p, p + size};
  }
  std::vector<std::byte> out = sample;
  for (size_t i = 1; i + 2 < size; i += 3) {
    size_t at = (size_t{data[i]} << 8 | data[i + 1]) % out.size();
    out[at] = static_cast<std::byte>(data[i + 2]);
  }
  return out;
}

ckpt::image::Store& store() {
  static std::filesystem::path dir =
      std::filesystem::path("/dev/shm") / ("ckpt-fuzz-restore-" + std::to_string(::getpid()));
  static ckpt::image::Store s = [] {
    auto opened = ckpt::image::Store::open(dir, {.create = true});
    if (!opened.ok()) __builtin_trap();
    return std::move(*opened);
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = input_image(data, size);
  auto writer = store().begin_generation();
  if (!writer.ok()) __builtin_trap();
  if (!(*writer)->write_section(ckpt::schema::kProcessSection, bytes).ok()) __builtin_trap();
  auto gen = (*writer)->commit();
  if (!gen.ok()) __builtin_trap();
  ckpt::RestoreOptions opts;
  opts.generation = gen->id;
  opts.dry_run = true;
  auto r = ckpt::restore_process(store(), opts);
  if (!r.ok() && r.error().message.empty()) __builtin_trap();
  (void)store().apply_retention({.keep = 1});
  return 0;
}
