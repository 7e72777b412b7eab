#pragma once
// Durations and sizes as people read them, for messages and progress lines.
#include <chrono>
#include <cstdint>
#include <string>

namespace ckpt {

// Milliseconds, with fractions: a freeze takes 2.4 ms.
inline double ms(std::chrono::nanoseconds d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// "1023 B", "1.5 KiB", "3.0 TiB".
std::string human_bytes(double bytes);

}  // namespace ckpt
