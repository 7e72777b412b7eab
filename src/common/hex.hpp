#pragma once
// Lower-case hex text for small binary blobs kept in JSON metadata (xstate, pipe contents).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

template <typename Bytes>
std::string to_hex(const Bytes& data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(data.size() * 2);
  for (auto b : data) {
    auto v = static_cast<uint8_t>(b);
    s.push_back(kDigits[v >> 4]);
    s.push_back(kDigits[v & 15]);
  }
  return s;
}

// Decodes text written by to_hex; other characters decode as garbage, never out of bounds.
template <typename Bytes>
Bytes from_hex(std::string_view s) {
  auto nibble = [](char c) {
    return static_cast<uint8_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  };
  Bytes out(s.size() / 2, {});
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<typename Bytes::value_type>(nibble(s[2 * i]) << 4 |
                                                     (nibble(s[2 * i + 1]) & 15));
  return out;
}

}  // namespace ckpt
