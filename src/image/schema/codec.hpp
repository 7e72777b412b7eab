#pragma once
// The codec of the process image: typed records to CBOR and back.
//
// A record is a struct that names each of its fields once, in a member template
//
//   template <class V> void visit(V& v) {
//     v("tid", tid);          // required: an image without it is refused
//     v("comm", comm);        // std::optional<T> members may be absent
//     v.opt("nice", nice);    // optional with a default: absent keeps the member's value
//   }
//
// and the same function serves encoding and decoding, so the two cannot drift apart. Fields of
// types bool, integers, enums (with EnumNames), std::string, Bytes (CBOR byte strings),
// std::vector, std::array, std::optional, nested records and Value (an opaque sub-record decoded
// later by its owner, e.g. an fd kind's payload) are supported.
//
// Decoding never trusts the input: CBOR is scanned iteratively before it is parsed (nesting
// depth and declared lengths bounded), every field's type and integer range is checked, and the
// first problem is returned as one error naming its place: "/processes/1/threads/0/xstate:
// expected bytes, found string".
#include <array>
#include <concepts>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace ckpt::schema {

using Value = nlohmann::json;
using Bytes = std::vector<uint8_t>;

// Names of an enum's values, indexed by value: specialize with
//   template <> struct EnumNames<MyEnum> { static constexpr std::array names = {"a", "b"}; };
template <class E>
struct EnumNames;

namespace detail {

template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {};
template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_array : std::false_type {};
template <class T, size_t N>
struct is_array<std::array<T, N>> : std::true_type {};

struct NullVisitor {
  template <class T>
  void operator()(const char*, T&) {}
  template <class T>
  void opt(const char*, T&) {}
};

std::string type_name(const Value& v);
Error mismatch(const std::string& path, std::string_view want, const Value& got);

}  // namespace detail

template <class T>
concept Record = requires(T& t, detail::NullVisitor& v) {
  t.visit(v);
};

template <class T>
Value encode(const T& v);

class Encoder {
 public:
  explicit Encoder(Value& out) : out_(out) {}
  template <class T>
  void operator()(const char* key, const T& v) {
    if constexpr (detail::is_optional<T>::value) {
      if (v) out_[key] = encode(*v);
    } else {
      out_[key] = encode(v);
    }
  }
  template <class T>
  void opt(const char* key, const T& v) {
    (*this)(key, v);
  }

 private:
  Value& out_;
};

template <class T>
Value encode(const T& v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v;
  } else if constexpr (std::is_enum_v<T>) {
    return std::string(EnumNames<T>::names[static_cast<size_t>(v)]);
  } else if constexpr (std::is_integral_v<T>) {
    return v;
  } else if constexpr (std::is_same_v<T, std::string>) {
    return v;
  } else if constexpr (std::is_same_v<T, Bytes>) {
    return Value::binary(v);
  } else if constexpr (std::is_same_v<T, Value>) {
    return v;
  } else if constexpr (detail::is_vector<T>::value || detail::is_array<T>::value) {
    Value a = Value::array();
    for (const auto& e : v) a.push_back(encode(e));
    return a;
  } else {
    static_assert(Record<T>, "not a type the image codec knows");
    Value o = Value::object();
    Encoder e(o);
    // visit() is written once for both directions; the encoder only reads the fields.
    const_cast<T&>(v).visit(e);
    return o;
  }
}

template <class T>
Status decode(const Value& v, T& out, const std::string& path);

class Decoder {
 public:
  Decoder(const Value& in, const std::string& path) : in_(in), path_(path) {}
  template <class T>
  void operator()(const char* key, T& out) {
    field(key, out, !detail::is_optional<T>::value);
  }
  template <class T>
  void opt(const char* key, T& out) {
    field(key, out, false);
  }
  Status status() const { return failed_ ? Status(error_) : Status(); }

 private:
  template <class T>
  void field(const char* key, T& out, bool required) {
    if (failed_) return;
    auto it = in_.find(key);
    if (it == in_.end() || it->is_null()) {
      if (required) fail(make_error(fmt::format("{}/{}: missing", path_, key)));
      return;
    }
    Status st = decode(*it, out, path_ + "/" + key);
    if (!st.ok()) fail(st.error());
  }
  void fail(Error e) {
    failed_ = true;
    error_ = std::move(e);
  }

  const Value& in_;
  std::string path_;
  bool failed_ = false;
  Error error_;
};

template <std::integral T>
Status decode_integer(const Value& v, T& out, const std::string& path) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (!std::in_range<T>(u)) return errorf("{}: {} is out of range", path, u);
    out = static_cast<T>(u);
    return {};
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (!std::in_range<T>(s)) return errorf("{}: {} is out of range", path, s);
    out = static_cast<T>(s);
    return {};
  }
  return detail::mismatch(path, "an integer", v);
}

template <class T>
Status decode(const Value& v, T& out, const std::string& path) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return detail::mismatch(path, "a boolean", v);
    out = v.get<bool>();
    return {};
  } else if constexpr (std::is_enum_v<T>) {
    if (!v.is_string()) return detail::mismatch(path, "a name", v);
    const auto& names = EnumNames<T>::names;
    for (size_t i = 0; i < names.size(); ++i)
      if (v.get_ref<const std::string&>() == names[i]) {
        out = static_cast<T>(i);
        return {};
      }
    return errorf("{}: unknown value '{}'", path, v.get_ref<const std::string&>());
  } else if constexpr (std::is_integral_v<T>) {
    return decode_integer(v, out, path);
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) return detail::mismatch(path, "a string", v);
    out = v.get<std::string>();
    return {};
  } else if constexpr (std::is_same_v<T, Bytes>) {
    if (!v.is_binary()) return detail::mismatch(path, "bytes", v);
    const auto& b = v.get_binary();
    out.assign(b.begin(), b.end());
    return {};
  } else if constexpr (std::is_same_v<T, Value>) {
    out = v;
    return {};
  } else if constexpr (detail::is_optional<T>::value) {
    typename T::value_type inner{};
    CKPT_TRY(decode(v, inner, path));
    out = std::move(inner);
    return {};
  } else if constexpr (detail::is_vector<T>::value) {
    if (!v.is_array()) return detail::mismatch(path, "an array", v);
    out.clear();
    out.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      CKPT_TRY(decode(v[i], out[i], fmt::format("{}/{}", path, i)));
    return {};
  } else if constexpr (detail::is_array<T>::value) {
    if (!v.is_array() || v.size() != out.size())
      return errorf("{}: expected an array of {}, found {}", path, out.size(),
                    detail::type_name(v));
    for (size_t i = 0; i < out.size(); ++i)
      CKPT_TRY(decode(v[i], out[i], fmt::format("{}/{}", path, i)));
    return {};
  } else {
    static_assert(Record<T>, "not a type the image codec knows");
    if (!v.is_object()) return detail::mismatch(path, "a record", v);
    Decoder d(v, path);
    out.visit(d);
    return d.status();
  }
}

// A record decoded from a Value, e.g. an fd kind's payload; `path` places it in errors.
template <class T>
Result<T> from_value(const Value& v, const std::string& path) {
  T out{};
  CKPT_TRY(decode(v, out, path));
  return out;
}

// CBOR bytes of a value, and back. `what` names the data in errors ("process image").
std::vector<std::byte> to_cbor(const Value& v);
Result<Value> from_cbor(std::span<const std::byte> bytes, std::string_view what);
// Checks that CBOR is well formed and shallow enough to parse safely (nesting at most
// kMaxDepth, every declared length within the input, no indefinite lengths or tags).
inline constexpr size_t kMaxDepth = 48;
Status check_cbor(std::span<const std::byte> bytes);

// Parts of CBOR that check_cbor() passed, each as its own bytes, so that the parts of a large
// record can be parsed apart (and at once, on several CPUs): an array's items, a record's
// entries (keys must be texts), and one part parsed.
struct CborEntry {
  std::string_view key;
  std::span<const std::byte> value;
};
Result<std::vector<std::span<const std::byte>>> cbor_array_items(
    std::span<const std::byte> checked);
Result<std::vector<CborEntry>> cbor_map_entries(std::span<const std::byte> checked);
Result<Value> parse_checked_cbor(std::span<const std::byte> checked, std::string_view what);

// JSON text of a value for people (`ckpt show --json`): byte strings become their length and
// the first bytes in hex, invalid UTF-8 in strings is replaced.
std::string to_display_json(const Value& v, int indent);

}  // namespace ckpt::schema
