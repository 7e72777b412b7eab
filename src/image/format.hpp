#pragma once
// The on-disk layout of a store (docs/image-format.md): names, magics, the manifest codec and
// generation ids. Shared by the writer, the reader and the fuzz targets.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "image/store.hpp"

namespace ckpt::image::format {

// The version this ckpt writes; a reader accepts every version up to it (see the doc).
inline constexpr uint32_t kVersion = 1;

inline constexpr std::string_view kMarkerName = "CKPT";
inline constexpr std::string_view kMarkerMagic = "ckpt store\nformat 1\n";
inline constexpr std::string_view kLockName = "lock";
inline constexpr std::string_view kManifestName = "manifest";
inline constexpr std::string_view kDataName = "data";
inline constexpr std::string_view kGenPrefix = "gen-";
inline constexpr std::string_view kTmpPrefix = ".tmp-";
inline constexpr std::string_view kDelPrefix = ".del-";

inline constexpr char kManifestMagic[8] = {'C', 'K', 'P', 'T', 'M', 'A', 'N', '\0'};
inline constexpr char kDataMagic[8] = {'C', 'K', 'P', 'T', 'D', 'A', 'T', '\0'};
inline constexpr size_t kManifestHeaderSize = 40;
inline constexpr size_t kDataHeaderSize = 16;
// A manifest is small (labels and section table); a larger one is damage, not data.
inline constexpr uint64_t kMaxManifestBody = 64u << 20;

// The 16 bytes at the start of every data file.
std::vector<std::byte> data_header();

// id, path and total_bytes are not stored in the manifest: they come from the directory.
std::vector<std::byte> encode_manifest(const GenerationInfo& gen);
// `what` names the manifest file in errors. Checks the header, checksums, version and that every
// section lies inside a listed file, without touching the data files.
Result<GenerationInfo> decode_manifest(std::span<const std::byte> bytes, std::string_view what);

struct GenId {
  uint64_t seconds = 0;
  uint32_t seq = 0;
  auto operator<=>(const GenId&) const = default;
};
std::string format_id(GenId id);
std::optional<GenId> parse_id(std::string_view name);
// The id after `newest` for a generation created at `now_seconds`: ids keep increasing even if
// the clock steps back.
GenId next_id(std::optional<GenId> newest, uint64_t now_seconds);

std::string_view compression_name(Compression c);

}  // namespace ckpt::image::format
