#pragma once
// `ckpt show` of a generation's process image, like CRIU's crit: processes, threads, mappings,
// descriptors, signals and timers as text or JSON, and the differences between two images.
#include <iosfwd>
#include <string>
#include <vector>

#include "image/schema/records.hpp"
#include "image/store.hpp"

namespace ckpt::cli {

// The process image of a generation (its checksum is checked as it is read).
Result<schema::ImageRoot> read_process_image(const image::GenerationInfo& gen);
void print_image(std::ostream& out, const schema::ImageRoot& image);
// Byte strings show as their length and first bytes.
std::string image_json(const schema::ImageRoot& image, int indent);
// One line per difference: "~ /processes/0/threads/0/regs/rip: 1 -> 2", "+ PATH: VALUE", "- PATH".
std::vector<std::string> diff_images(const schema::ImageRoot& a, const schema::ImageRoot& b);

}  // namespace ckpt::cli
