// Reading generations: manifests, verification of every checksum, and streaming section reads.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include <zstd.h>

#include "common/checksum.hpp"
#include "common/fs_util.hpp"
#include "common/populate.hpp"
#include "image/chain.hpp"
#include "image/format.hpp"
#include "image/store_internal.hpp"

namespace ckpt::image {
namespace {

namespace fs = std::filesystem;

struct ZstdDCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

Result<std::vector<std::byte>> read_manifest_bytes(const fs::path& path, Trust trust) {
  CKPT_TRY_ASSIGN(ScopedFd fd, detail::open_store_file(path, trust));
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return sys_error(fmt::format("stat {}", path.string()));
  if (static_cast<uint64_t>(st.st_size) > format::kMaxManifestBody + format::kManifestHeaderSize)
    return errorf("{}: {} bytes is too large for a manifest", path.string(), st.st_size);
  std::vector<std::byte> data(static_cast<size_t>(st.st_size));
  CKPT_TRY(read_exact(fd.get(), data, path.string()));
  return data;
}

// Checks the size and header of one data file.
Status check_data_file(const GenerationInfo& gen, const DataFileInfo& f) {
  auto path = (gen.path / f.name).string();
  CKPT_TRY_ASSIGN(ScopedFd fd, detail::open_store_file(path, gen.trust));
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return sys_error(fmt::format("stat {}", path));
  auto size = static_cast<uint64_t>(st.st_size);
  if (size != f.size)
    return errorf("{}: {} bytes, the manifest says {} ({})", path, size, f.size,
                  size < f.size ? "truncated" : "trailing bytes");
  auto want = format::data_header();
  if (size < want.size()) return errorf("{}: truncated header", path);
  std::vector<std::byte> got(want.size());
  CKPT_TRY(pread_exact(fd.get(), got, 0, path));
  if (got != want) return errorf("{}: bad data file header", path);
  return {};
}

Status check_section(const GenerationInfo& gen, const SectionMeta& s, std::span<std::byte> buf) {
  auto path = (gen.path / s.file).string();
  CKPT_TRY_ASSIGN(ScopedFd fd, detail::open_store_file(path, gen.trust));
  posix_fadvise(fd.get(), static_cast<off_t>(s.offset), static_cast<off_t>(s.stored_size),
                POSIX_FADV_SEQUENTIAL);
  Checksum64 sum;
  uint64_t done = 0;
  while (done < s.stored_size) {
    auto n = static_cast<size_t>(std::min<uint64_t>(buf.size(), s.stored_size - done));
    CKPT_TRY(pread_exact(fd.get(), buf.first(n), static_cast<off_t>(s.offset + done), path));
    sum.update(buf.first(n));
    done += n;
  }
  if (sum.digest() != s.checksum)
    return errorf("section '{}' in {} at offset {}: checksum mismatch", s.name, path, s.offset);
  return {};
}

class SectionReaderImpl final : public SectionReader {
 public:
  SectionReaderImpl(ScopedFd fd, std::string path, SectionMeta meta)
      : fd_(std::move(fd)), path_(std::move(path)), meta_(std::move(meta)) {
    if (meta_.compression == Compression::zstd) {
      dctx_.reset(ZSTD_createDCtx());
      inbuf_.resize(ZSTD_DStreamInSize() * 8);
    }
  }

  Result<size_t> read(std::span<std::byte> out) override {
    if (meta_.compression == Compression::zstd) return read_zstd(out);
    auto n = static_cast<size_t>(std::min<uint64_t>(out.size(), meta_.stored_size - stored_done_));
    if (n == 0) return size_t{0};
    CKPT_TRY(read_stored(out.first(n)));
    raw_done_ += n;
    return n;
  }

  const SectionMeta& meta() const override { return meta_; }

 private:
  // Reads the next stored bytes and checks the checksum as soon as the last one is in.
  Status read_stored(std::span<std::byte> buf) {
    CKPT_TRY(pread_exact(fd_.get(), buf, static_cast<off_t>(meta_.offset + stored_done_), path_));
    sum_.update(buf);
    stored_done_ += buf.size();
    if (stored_done_ == meta_.stored_size && sum_.digest() != meta_.checksum)
      return errorf("section '{}' in {} at offset {}: checksum mismatch", meta_.name, path_,
                    meta_.offset);
    return {};
  }

  Status refill() {
    auto n =
        static_cast<size_t>(std::min<uint64_t>(inbuf_.size(), meta_.stored_size - stored_done_));
    CKPT_TRY(read_stored(std::span(inbuf_).first(n)));
    in_ = {inbuf_.data(), n, 0};
    return {};
  }

  Result<size_t> read_zstd(std::span<std::byte> out) {
    if (out.empty()) return size_t{0};
    ZSTD_outBuffer o{out.data(), out.size(), 0};
    while (o.pos == 0) {
      if (in_.pos == in_.size) {
        if (stored_done_ == meta_.stored_size) return finish_zstd();
        CKPT_TRY(refill());
      }
      size_t r = ZSTD_decompressStream(dctx_.get(), &o, &in_);
      if (ZSTD_isError(r))
        return errorf("section '{}' in {}: decompress: {}", meta_.name, path_,
                      ZSTD_getErrorName(r));
      frame_done_ = r == 0;
    }
    raw_done_ += o.pos;
    if (raw_done_ > meta_.raw_size)
      return errorf("section '{}' in {}: more than the {} bytes recorded", meta_.name, path_,
                    meta_.raw_size);
    return o.pos;
  }

  Result<size_t> finish_zstd() {
    if (!frame_done_ || raw_done_ != meta_.raw_size)
      return errorf("section '{}' in {}: decompressed {} bytes, expected {}", meta_.name, path_,
                    raw_done_, meta_.raw_size);
    return size_t{0};
  }

  ScopedFd fd_;
  std::string path_;
  SectionMeta meta_;
  Checksum64 sum_;
  uint64_t stored_done_ = 0;
  uint64_t raw_done_ = 0;
  std::unique_ptr<ZSTD_DCtx, ZstdDCtxFree> dctx_;
  std::vector<std::byte> inbuf_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  bool frame_done_ = false;
};

}  // namespace

const SectionMeta* GenerationInfo::find_section(std::string_view name) const {
  for (auto& s : sections)
    if (s.name == name) return &s;
  return nullptr;
}

Result<GenerationInfo> read_generation(const fs::path& dir, Trust trust) {
  CKPT_TRY(detail::check_store_dir(dir, trust));
  auto path = dir / format::kManifestName;
  CKPT_TRY_ASSIGN(auto bytes, read_manifest_bytes(path, trust));
  CKPT_TRY_ASSIGN(GenerationInfo gen, format::decode_manifest(bytes, path.string()));
  gen.trust = trust;
  std::error_code ec;
  gen.path = fs::absolute(dir, ec).lexically_normal();
  if (gen.path.has_filename() == false) gen.path = gen.path.parent_path();
  gen.id = gen.path.filename().string();
  gen.total_bytes = bytes.size();
  for (auto& f : gen.files) gen.total_bytes += f.size;
  return gen;
}

Status verify_generation_files(const GenerationInfo& gen) {
  for (auto& f : gen.files) {
    Status st = check_data_file(gen, f);
    if (!st.ok()) return st.error().wrap(fmt::format("gen {}", gen.id));
  }
  return {};
}

namespace {

Status verify_one(const GenerationInfo& gen) {
  CKPT_TRY(verify_generation_files(gen));
  std::unique_ptr<std::byte[]> buf(new std::byte[detail::kIoChunk]);
  for (auto& s : gen.sections) {
    Status st = check_section(gen, s, std::span(buf.get(), detail::kIoChunk));
    if (!st.ok()) return st.error().wrap(fmt::format("gen {}", gen.id));
  }
  return {};
}

}  // namespace

// An incremental generation is only as good as every generation it needs.
Status verify_generation(const GenerationInfo& gen) {
  return check_chain(gen, verify_one);
}

Result<std::unique_ptr<SectionReader>> open_generation_section(const GenerationInfo& gen,
                                                               std::string_view name) {
  const SectionMeta* meta = gen.find_section(name);
  if (!meta) return errorf("gen {}: no section '{}'", gen.id, name);
  auto path = (gen.path / meta->file).string();
  CKPT_TRY_ASSIGN(ScopedFd fd, detail::open_store_file(path, gen.trust));
  posix_fadvise(fd.get(), static_cast<off_t>(meta->offset), static_cast<off_t>(meta->stored_size),
                POSIX_FADV_SEQUENTIAL);
  return std::unique_ptr<SectionReader>(new SectionReaderImpl(std::move(fd), path, *meta));
}

Result<std::vector<std::byte>> Store::read_section(const GenerationInfo& gen,
                                                   std::string_view name) const {
  CKPT_TRY_ASSIGN(auto reader, open_section(gen, name));
  // The raw size comes from the manifest: trusted only as far as the stored bytes can hold it,
  // and at most kFirstRoom (a corrupt manifest must not make us allocate gigabytes), then grown
  // as the bytes come. The room is backed at once: touching fresh pages one by one made reading
  // a 4 MiB page index take 28 ms here.
  const SectionMeta& meta = reader->meta();
  constexpr uint64_t kMostZstdRatio = 64;
  constexpr uint64_t kFirstRoom = uint64_t{64} << 20;
  uint64_t plausible =
      meta.compression == Compression::zstd ? meta.stored_size * kMostZstdRatio : meta.stored_size;
  uint64_t raw = meta.raw_size;
  std::vector<std::byte> out;
  // One byte more: the read that finds the end needs room.
  reserve_populated(out, static_cast<size_t>(std::min({raw, plausible, kFirstRoom}) + 1));
  out.resize(out.capacity());
  size_t used = 0;
  for (;;) {
    if (used == out.size()) out.resize(std::min<uint64_t>(raw + 1, out.size() * 2 + 1));
    CKPT_TRY_ASSIGN(size_t n, reader->read(std::span(out).subspan(used)));
    if (n == 0) break;
    used += n;
  }
  out.resize(used);
  return out;
}

Result<std::unique_ptr<SectionReader>> Store::open_section(const GenerationInfo& gen,
                                                           std::string_view name) const {
  return open_generation_section(gen, name);
}

Status Store::verify(const GenerationInfo& gen) const {
  return verify_generation(gen);
}

}  // namespace ckpt::image
