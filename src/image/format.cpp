#include "image/format.hpp"

#include <charconv>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "common/checksum.hpp"
#include "common/fs_util.hpp"

namespace ckpt::image::format {
namespace {

using nlohmann::json;

void put_u32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
void put_u64(std::byte* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
uint32_t get_u32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t get_u64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string hex64(uint64_t v) {
  return fmt::format("{:016x}", v);
}

std::optional<uint64_t> parse_hex64(std::string_view s) {
  uint64_t v = 0;
  if (s.size() != 16) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// A file name inside a generation: one plain path component.
bool safe_file_name(std::string_view n) {
  return !n.empty() && n.size() < 256 && n != "." && n != ".." &&
         n.find('/') == std::string_view::npos && n.find('\0') == std::string_view::npos;
}

json section_to_json(const SectionMeta& s) {
  return json{{"name", s.name},
              {"file", s.file},
              {"offset", s.offset},
              {"stored_size", s.stored_size},
              {"raw_size", s.raw_size},
              {"compression", compression_name(s.compression)},
              {"checksum_type", "xxh3-64"},
              {"checksum", hex64(s.checksum)}};
}

Result<SectionMeta> section_from_json(const json& j) {
  SectionMeta s;
  s.name = j.at("name").get<std::string>();
  s.file = j.at("file").get<std::string>();
  s.offset = j.at("offset").get<uint64_t>();
  s.stored_size = j.at("stored_size").get<uint64_t>();
  s.raw_size = j.at("raw_size").get<uint64_t>();
  auto comp = j.at("compression").get<std::string>();
  if (comp == "none") {
    s.compression = Compression::none;
  } else if (comp == "zstd") {
    s.compression = Compression::zstd;
  } else {
    return errorf("section '{}': unknown compression '{}'", s.name, comp);
  }
  auto type = j.at("checksum_type").get<std::string>();
  if (type != "xxh3-64") return errorf("section '{}': unknown checksum type '{}'", s.name, type);
  auto sum = parse_hex64(j.at("checksum").get<std::string>());
  if (!sum) return errorf("section '{}': bad checksum field", s.name);
  s.checksum = *sum;
  if (s.compression == Compression::none && s.raw_size != s.stored_size)
    return errorf("section '{}': raw size {} differs from stored size {}", s.name, s.raw_size,
                  s.stored_size);
  return s;
}

// Every section must lie inside a listed file; the names must be unique.
Status check_layout(const GenerationInfo& m) {
  std::set<std::string> names;
  for (auto& f : m.files)
    if (!safe_file_name(f.name)) return errorf("bad file name '{}'", f.name);
  for (auto& s : m.sections) {
    if (!names.insert(s.name).second) return errorf("duplicate section '{}'", s.name);
    const DataFileInfo* file = nullptr;
    for (auto& f : m.files)
      if (f.name == s.file) file = &f;
    if (!file) return errorf("section '{}': file '{}' is not listed", s.name, s.file);
    if (s.offset > file->size || s.stored_size > file->size - s.offset)
      return errorf("section '{}': bytes {}+{} lie outside {} ({} bytes)", s.name, s.offset,
                    s.stored_size, s.file, file->size);
  }
  return {};
}

Result<GenerationInfo> manifest_from_json(const json& j) {
  GenerationInfo m;
  m.writer_version = j.at("writer_version").get<std::string>();
  m.created_unix_ns = j.at("created_unix_ns").get<int64_t>();
  m.labels = j.at("labels").get<std::map<std::string, std::string>>();
  for (auto& f : j.at("files"))
    m.files.push_back({f.at("name").get<std::string>(), f.at("size").get<uint64_t>()});
  for (auto& s : j.at("sections")) {
    CKPT_TRY_ASSIGN(SectionMeta meta, section_from_json(s));
    m.sections.push_back(std::move(meta));
  }
  CKPT_TRY(check_layout(m));
  return m;
}

}  // namespace

std::vector<std::byte> data_header() {
  std::vector<std::byte> h(kDataHeaderSize);
  std::memcpy(h.data(), kDataMagic, 8);
  put_u32(h.data() + 8, kVersion);
  return h;
}

std::string_view compression_name(Compression c) {
  return c == Compression::zstd ? "zstd" : "none";
}

std::vector<std::byte> encode_manifest(const GenerationInfo& m) {
  json sections = json::array();
  for (auto& s : m.sections) sections.push_back(section_to_json(s));
  json files = json::array();
  for (auto& f : m.files) files.push_back({{"name", f.name}, {"size", f.size}});
  json body{{"writer_version", m.writer_version},
            {"created_unix_ns", m.created_unix_ns},
            {"labels", m.labels},
            {"files", files},
            {"sections", sections}};
  std::string text = body.dump(1) + "\n";
  std::vector<std::byte> out(kManifestHeaderSize + text.size());
  std::memcpy(out.data(), kManifestMagic, 8);
  put_u32(out.data() + 8, kVersion);
  put_u32(out.data() + 12, 0);
  put_u64(out.data() + 16, text.size());
  put_u64(out.data() + 24, checksum64(as_bytes(text)));
  put_u64(out.data() + 32, checksum64(std::span(out.data(), 32)));
  std::memcpy(out.data() + kManifestHeaderSize, text.data(), text.size());
  return out;
}

Result<GenerationInfo> decode_manifest(std::span<const std::byte> bytes, std::string_view what) {
  if (bytes.size() < kManifestHeaderSize)
    return errorf("{}: truncated header ({} of {} bytes)", what, bytes.size(), kManifestHeaderSize);
  if (std::memcmp(bytes.data(), kManifestMagic, 8) != 0)
    return errorf("{}: not a ckpt manifest (bad magic)", what);
  uint32_t version = get_u32(bytes.data() + 8);
  if (checksum64(bytes.first(32)) != get_u64(bytes.data() + 32))
    return errorf("{}: header checksum mismatch", what);
  if (version > kVersion || version == 0)
    return errorf("{}: format version {} is not supported (this ckpt reads 1 to {})", what, version,
                  kVersion);
  uint64_t len = get_u64(bytes.data() + 16);
  if (len > kMaxManifestBody) return errorf("{}: body length {} is too large", what, len);
  if (bytes.size() - kManifestHeaderSize != len)
    return errorf("{}: body is {} bytes, header says {}", what, bytes.size() - kManifestHeaderSize,
                  len);
  auto body = bytes.subspan(kManifestHeaderSize);
  if (checksum64(body) != get_u64(bytes.data() + 24))
    return errorf("{}: body checksum mismatch", what);
  auto text = reinterpret_cast<const char*>(body.data());
  json j = json::parse(text, text + body.size(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return errorf("{}: body is not a JSON object", what);
  try {
    auto m = manifest_from_json(j);
    if (!m.ok()) return m.error().wrap(what);
    m->format_version = version;
    return m;
  } catch (const json::exception& e) {
    return errorf("{}: malformed body: {}", what, e.what());
  }
}

std::string format_id(GenId id) {
  return fmt::format("{}{:012}-{:06}", kGenPrefix, id.seconds, id.seq);
}

std::optional<GenId> parse_id(std::string_view name) {
  // gen-SSSSSSSSSSSS-QQQQQQ
  if (name.size() != kGenPrefix.size() + 12 + 1 + 6 || !name.starts_with(kGenPrefix))
    return std::nullopt;
  name.remove_prefix(kGenPrefix.size());
  if (name[12] != '-') return std::nullopt;
  GenId id;
  auto digits = [](std::string_view s, auto& out) {
    for (char c : s)
      if (c < '0' || c > '9') return false;
    return std::from_chars(s.data(), s.data() + s.size(), out).ec == std::errc();
  };
  if (!digits(name.substr(0, 12), id.seconds) || !digits(name.substr(13), id.seq))
    return std::nullopt;
  return id;
}

GenId next_id(std::optional<GenId> newest, uint64_t now_seconds) {
  if (!newest || now_seconds > newest->seconds) return {now_seconds, 0};
  if (newest->seq >= 999999) return {newest->seconds + 1, 0};
  return {newest->seconds, newest->seq + 1};
}

}  // namespace ckpt::image::format
