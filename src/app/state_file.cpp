#include "app/state_file.hpp"

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

#include "ckpt/version.hpp"
#include "common/checksum.hpp"

namespace ckpt::app {
namespace {

// Fixed little-endian encoding, independent of the host, so a file means the same everywhere.
template <typename T>
void put(std::vector<std::byte>& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i)
    out.push_back(static_cast<std::byte>((static_cast<uint64_t>(value) >> (8 * i)) & 0xff));
}

template <typename T>
T get(std::span<const std::byte> data, size_t offset) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<uint64_t>(std::to_integer<uint8_t>(data[offset + i])) << (8 * i);
  return static_cast<T>(v);
}

// Reads the item list between the header and the trailer; every length is bounds-checked.
Result<std::vector<StateItem>> decode_items(std::span<const std::byte> body, uint32_t count) {
  std::vector<StateItem> items;
  size_t off = 0;
  for (uint32_t i = 0; i < count; ++i) {
    if (body.size() - off < 4) return errorf("item {}: truncated name length", i);
    auto name_len = get<uint32_t>(body, off);
    off += 4;
    if (name_len == 0 || name_len > kMaxItemNameLength || body.size() - off < name_len)
      return errorf("item {}: bad name length {}", i, name_len);
    StateItem item;
    item.name.assign(reinterpret_cast<const char*>(body.data() + off), name_len);
    off += name_len;
    if (body.size() - off < 8) return errorf("item '{}': truncated length", item.name);
    auto len = get<uint64_t>(body, off);
    off += 8;
    if (body.size() - off < len)
      return errorf("item '{}': length {} exceeds the file", item.name, len);
    item.bytes.assign(body.begin() + static_cast<ptrdiff_t>(off),
                      body.begin() + static_cast<ptrdiff_t>(off + len));
    off += len;
    items.push_back(std::move(item));
  }
  if (off != body.size())
    return errorf("{} unexpected bytes after the last item", body.size() - off);
  return items;
}

bool parse_digits(std::string_view s, uint64_t* out) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

constexpr std::string_view kPrefix = "checkpoint.";
constexpr std::string_view kSuffix = ".dat";

}  // namespace

uint32_t current_writer_version() {
  return (CKPT_VERSION_MAJOR << 16) | (CKPT_VERSION_MINOR << 8) | CKPT_VERSION_PATCH;
}

std::vector<std::byte> encode_state(uint64_t timestamp_ns, const std::vector<StateItem>& items) {
  std::vector<std::byte> out;
  size_t total = kStateHeaderSize + kStateTrailerSize;
  for (auto& item : items) total += 12 + item.name.size() + item.bytes.size();
  out.reserve(total);
  for (char c : kStateMagic) out.push_back(static_cast<std::byte>(c));
  put<uint32_t>(out, kStateFormatVersion);
  put<uint32_t>(out, current_writer_version());
  put<uint64_t>(out, timestamp_ns);
  put<uint32_t>(out, static_cast<uint32_t>(items.size()));
  put<uint32_t>(out, 0);  // reserved
  for (auto& item : items) {
    put<uint32_t>(out, static_cast<uint32_t>(item.name.size()));
    for (char c : item.name) out.push_back(static_cast<std::byte>(c));
    put<uint64_t>(out, item.bytes.size());
    out.insert(out.end(), item.bytes.begin(), item.bytes.end());
  }
  put<uint64_t>(out, checksum64(out));
  return out;
}

Result<StateFile> decode_state(std::span<const std::byte> data) {
  if (data.size() < kStateHeaderSize + kStateTrailerSize)
    return errorf("truncated: {} bytes, a checkpoint has at least {}", data.size(),
                  kStateHeaderSize + kStateTrailerSize);
  if (std::memcmp(data.data(), kStateMagic.data(), kStateMagic.size()) != 0)
    return make_error("not a checkpoint file (bad magic)");
  StateFile file;
  file.format_version = get<uint32_t>(data, 8);
  if (file.format_version != kStateFormatVersion)
    return errorf("unsupported format version {} (this library reads {})", file.format_version,
                  kStateFormatVersion);
  size_t body_end = data.size() - kStateTrailerSize;
  uint64_t stored = get<uint64_t>(data, body_end);
  uint64_t actual = checksum64(data.first(body_end));
  if (stored != actual)
    return errorf("checksum mismatch (stored {:016x}, computed {:016x}): corrupt or truncated file",
                  stored, actual);
  file.writer_version = get<uint32_t>(data, 12);
  file.timestamp_ns = get<uint64_t>(data, 16);
  auto count = get<uint32_t>(data, 24);
  CKPT_TRY_ASSIGN(file.items,
                  decode_items(data.subspan(kStateHeaderSize, body_end - kStateHeaderSize), count));
  return file;
}

std::string checkpoint_file_name(CheckpointName name) {
  if (name.seq == 0) return fmt::format("{}{}{}", kPrefix, name.seconds, kSuffix);
  return fmt::format("{}{}.{}{}", kPrefix, name.seconds, name.seq, kSuffix);
}

std::optional<CheckpointName> parse_checkpoint_file_name(std::string_view file_name) {
  if (!file_name.starts_with(kPrefix) || !file_name.ends_with(kSuffix)) return std::nullopt;
  if (file_name.size() <= kPrefix.size() + kSuffix.size()) return std::nullopt;
  std::string_view mid =
      file_name.substr(kPrefix.size(), file_name.size() - kPrefix.size() - kSuffix.size());
  auto dot = mid.find('.');
  uint64_t seconds = 0;
  uint64_t seq = 0;
  if (!parse_digits(mid.substr(0, dot), &seconds) || seconds > INT64_MAX) return std::nullopt;
  if (dot != std::string_view::npos) {
    if (!parse_digits(mid.substr(dot + 1), &seq) || seq == 0 || seq > UINT32_MAX)
      return std::nullopt;
  }
  return CheckpointName{static_cast<int64_t>(seconds), static_cast<uint32_t>(seq)};
}

bool is_checkpoint_temp_file(std::string_view file_name) {
  return file_name.starts_with(".tmp.checkpoint.");
}

Result<std::vector<CheckpointEntry>> list_checkpoints(const std::filesystem::path& dir) {
  std::vector<CheckpointEntry> entries;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) {
    if (errno == ENOENT) return entries;
    return sys_error(fmt::format("list checkpoints in {}", dir.string()));
  }
  errno = 0;
  while (dirent* e = ::readdir(d.get())) {
    if (auto name = parse_checkpoint_file_name(e->d_name))
      entries.push_back({*name, dir / e->d_name});
    errno = 0;
  }
  if (int err = errno) return sys_error(err, fmt::format("list checkpoints in {}", dir.string()));
  std::sort(entries.begin(), entries.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.name > b.name; });
  return entries;
}

CheckpointName next_checkpoint_name(const std::vector<CheckpointEntry>& newest_first,
                                    int64_t now_seconds) {
  if (newest_first.empty() || newest_first.front().name.seconds < now_seconds)
    return {now_seconds, 0};
  const CheckpointName& newest = newest_first.front().name;
  return {newest.seconds, newest.seq + 1};
}

}  // namespace ckpt::app
