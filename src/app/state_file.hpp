#pragma once
// The checkpoint.<ts>.dat files of application-level checkpoints: their byte format and their
// names. Pure functions plus a directory listing, so the format can be tested on its own.
// docs/app-checkpoints.md describes both.
#include <compare>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace ckpt::app {

inline constexpr std::string_view kStateMagic{"CKPTAPP1", 8};
inline constexpr uint32_t kStateFormatVersion = 1;
inline constexpr size_t kStateHeaderSize = 32;
inline constexpr size_t kStateTrailerSize = 8;  // XXH3-64 of everything before it
inline constexpr size_t kMaxItemNameLength = 255;

struct StateItem {
  std::string name;
  std::vector<std::byte> bytes;
};

struct StateFile {
  uint32_t format_version = 0;
  uint32_t writer_version = 0;  // libckpt version that wrote it: major << 16 | minor << 8 | patch
  uint64_t timestamp_ns = 0;    // CLOCK_REALTIME when written
  std::vector<StateItem> items;
};

uint32_t current_writer_version();
std::vector<std::byte> encode_state(uint64_t timestamp_ns, const std::vector<StateItem>& items);
// Checks size, magic, format version and checksum before parsing the items, so random bytes,
// truncation and bit flips all come back as one-line errors.
Result<StateFile> decode_state(std::span<const std::byte> data);

// checkpoint.<seconds>.dat is seq 0; checkpoint.<seconds>.<seq>.dat the seq-th further file
// written in that second. Newer sorts greater.
struct CheckpointName {
  int64_t seconds = 0;
  uint32_t seq = 0;
  auto operator<=>(const CheckpointName&) const = default;
};

std::string checkpoint_file_name(CheckpointName name);
std::optional<CheckpointName> parse_checkpoint_file_name(std::string_view file_name);
// Temporary files of write_file_atomic for a checkpoint: left behind only by a crash mid-write.
bool is_checkpoint_temp_file(std::string_view file_name);

struct CheckpointEntry {
  CheckpointName name;
  std::filesystem::path path;
};

// The checkpoint files in `dir`, newest first. A missing directory has none.
Result<std::vector<CheckpointEntry>> list_checkpoints(const std::filesystem::path& dir);

// The name for a checkpoint taken at `now_seconds`: normally checkpoint.<now>.dat; after one in
// the same second the next seq; and if the clock went back behind the newest existing file, a
// name after that file, so that the newest checkpoint always sorts first.
CheckpointName next_checkpoint_name(const std::vector<CheckpointEntry>& newest_first,
                                    int64_t now_seconds);

}  // namespace ckpt::app
