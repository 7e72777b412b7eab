#include "image/schema/codec.hpp"

#include <cstring>

namespace ckpt::schema {
namespace detail {

std::string type_name(const Value& v) {
  if (v.is_binary()) return "bytes";
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a floating-point number";
  if (v.is_object()) return "a record";
  return std::string("a ") + v.type_name();
}

Error mismatch(const std::string& path, std::string_view want, const Value& got) {
  return errorf("{}: expected {}, found {}", path, want, type_name(got));
}

}  // namespace detail

namespace {

// One CBOR data item's head: major type, the additional-information argument, and the number
// of bytes the head takes.
struct Head {
  int major = 0;
  uint64_t arg = 0;
  size_t size = 0;
};

std::span<const uint8_t> as_u8(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
}

Result<Head> read_head(std::span<const uint8_t> in, size_t at) {
  if (at >= in.size()) return make_error("CBOR ends inside an item");
  uint8_t first = in[at];
  Head h{first >> 5, first & 31u, 1};
  if (h.arg < 24) return h;
  if (h.arg > 27) return errorf("CBOR item at byte {} uses an indefinite or reserved length", at);
  size_t n = size_t{1} << (h.arg - 24);
  if (in.size() - at - 1 < n) return make_error("CBOR ends inside an item's length");
  uint64_t arg = 0;
  for (size_t i = 0; i < n; ++i) arg = arg << 8 | in[at + 1 + i];
  h.arg = arg;
  h.size = 1 + n;
  return h;
}

}  // namespace

Status check_cbor(std::span<const std::byte> bytes) {
  auto in = as_u8(bytes);
  // Items still expected at each open level (a map's entries count twice).
  std::vector<uint64_t> open{1};
  size_t at = 0;
  while (!open.empty()) {
    if (open.back() == 0) {
      open.pop_back();
      continue;
    }
    --open.back();
    CKPT_TRY_ASSIGN(Head h, read_head(in, at));
    at += h.size;
    uint64_t left = in.size() - at;
    switch (h.major) {
      case 0:  // unsigned integer
      case 1:  // negative integer
      case 7:  // simple values and floats: the head holds them
        break;
      case 2:  // byte string
      case 3:  // text string
        if (h.arg > left) return errorf("CBOR string at byte {} runs past the end", at - h.size);
        at += h.arg;
        break;
      case 4:  // array
      case 5:  // map
        if (h.arg > left) return errorf("CBOR container at byte {} is longer than the input", at);
        if (open.size() > kMaxDepth) return errorf("CBOR nests deeper than {} levels", kMaxDepth);
        open.push_back(h.major == 5 ? h.arg * 2 : h.arg);
        break;
      default:
        return errorf("CBOR tag at byte {} is not allowed in an image", at - h.size);
    }
  }
  if (at != in.size()) return errorf("{} bytes after the end of the CBOR item", in.size() - at);
  return {};
}

namespace {

// Where the item at `at` of input that check_cbor() passed ends.
Result<size_t> item_end(std::span<const uint8_t> in, size_t at) {
  uint64_t left = 1;  // items still to pass over (check_cbor bounded every count)
  while (left > 0) {
    --left;
    CKPT_TRY_ASSIGN(Head h, read_head(in, at));
    at += h.size;
    if (h.major == 2 || h.major == 3) {
      if (h.arg > in.size() - at) return errorf("CBOR string at byte {} runs past the end", at);
      at += h.arg;
    } else if (h.major == 4 || h.major == 5) {
      left += h.major == 5 ? h.arg * 2 : h.arg;
    }
  }
  return at;
}

// The head of the container that `bytes` holds, if it is one of type `major`.
Result<Head> container_head(std::span<const uint8_t> in, int major, std::string_view what) {
  CKPT_TRY_ASSIGN(Head h, read_head(in, 0));
  if (h.major != major) return errorf("CBOR item is not {}", what);
  return h;
}

}  // namespace

Result<std::vector<std::span<const std::byte>>> cbor_array_items(
    std::span<const std::byte> checked) {
  auto in = as_u8(checked);
  CKPT_TRY_ASSIGN(Head h, container_head(in, 4, "an array"));
  std::vector<std::span<const std::byte>> items;
  size_t at = h.size;
  for (uint64_t i = 0; i < h.arg; ++i) {
    CKPT_TRY_ASSIGN(size_t end, item_end(in, at));
    items.push_back(checked.subspan(at, end - at));
    at = end;
  }
  return items;
}

Result<std::vector<CborEntry>> cbor_map_entries(std::span<const std::byte> checked) {
  auto in = as_u8(checked);
  CKPT_TRY_ASSIGN(Head h, container_head(in, 5, "a record"));
  std::vector<CborEntry> entries;
  size_t at = h.size;
  for (uint64_t i = 0; i < h.arg; ++i) {
    CKPT_TRY_ASSIGN(Head key, read_head(in, at));
    if (key.major != 3) return errorf("CBOR record key at byte {} is not a text", at);
    at += key.size;
    std::string_view name(reinterpret_cast<const char*>(in.data() + at), key.arg);
    at += key.arg;
    CKPT_TRY_ASSIGN(size_t end, item_end(in, at));
    entries.push_back({name, checked.subspan(at, end - at)});
    at = end;
  }
  return entries;
}

Result<Value> parse_checked_cbor(std::span<const std::byte> checked, std::string_view what) {
  auto* p = reinterpret_cast<const uint8_t*>(checked.data());
  Value v = Value::from_cbor(p, p + checked.size(), true, false);
  if (v.is_discarded()) return errorf("{} is not valid CBOR", what);
  return v;
}

std::vector<std::byte> to_cbor(const Value& v) {
  std::vector<uint8_t> raw = Value::to_cbor(v);
  std::vector<std::byte> out(raw.size());
  if (!raw.empty()) std::memcpy(out.data(), raw.data(), raw.size());
  return out;
}

Result<Value> from_cbor(std::span<const std::byte> bytes, std::string_view what) {
  Status ok = check_cbor(bytes);
  if (!ok.ok()) return ok.error().wrap(fmt::format("{} is not valid", what));
  return parse_checked_cbor(bytes, what);
}

namespace {

Value displayable(const Value& v) {
  if (v.is_binary()) {
    const auto& b = v.get_binary();
    std::string head;
    for (size_t i = 0; i < b.size() && i < 16; ++i) head += fmt::format("{:02x}", b[i]);
    return fmt::format("<{} bytes{}{}>", b.size(), head.empty() ? "" : ": ",
                       head + (b.size() > 16 ? "..." : ""));
  }
  if (v.is_array()) {
    Value a = Value::array();
    for (auto& e : v) a.push_back(displayable(e));
    return a;
  }
  if (v.is_object()) {
    Value o = Value::object();
    for (auto& [k, e] : v.items()) o[k] = displayable(e);
    return o;
  }
  return v;
}

}  // namespace

std::string to_display_json(const Value& v, int indent) {
  return displayable(v).dump(indent, ' ', false, Value::error_handler_t::replace);
}

}  // namespace ckpt::schema
