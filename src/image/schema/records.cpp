#include "image/schema/records.hpp"

#include <algorithm>
#include <atomic>
#include <thread>

#include "common/cpu_pin.hpp"
#include "image/schema/validate.hpp"

namespace ckpt::schema {
namespace {

// Below this many bytes of processes, a thread costs more than it saves.
constexpr size_t kParallelBytes = 256 << 10;

Status decode_process(std::span<const std::byte> bytes, size_t i, ProcessRecord& out) {
  std::string path = fmt::format("/processes/{}", i);
  CKPT_TRY_ASSIGN(Value v, parse_checked_cbor(bytes, path));
  return decode(v, out, path);
}

// A tree's processes are most of its image, and parsing CBOR into values is slow (the image of
// 64 small processes, 1.1 MB, took 60 ms on one CPU here): they are decoded on every CPU the
// restorer may use, each process whole by one thread. The first failure in image order is the
// one reported, as a decode on one thread would.
Status decode_processes(std::span<const std::byte> array, std::vector<ProcessRecord>& out) {
  CKPT_TRY_ASSIGN(auto items, cbor_array_items(array));
  out.resize(items.size());
  if (items.empty()) return {};
  std::vector<Status> results(items.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < items.size();)
      results[i] = decode_process(items[i], i, out[i]);
  };
  size_t workers = array.size() < kParallelBytes ? 1 : allowed_cpus().size();
  workers = std::clamp<size_t>(workers, 1, items.size());
  std::vector<std::jthread> helpers;
  for (size_t k = 1; k < workers; ++k) helpers.emplace_back(work);
  work();
  helpers.clear();  // joins
  for (auto& r : results) CKPT_TRY(r);
  return {};
}

Status check_version(const Value& v) {
  uint32_t format = 0;
  auto it = v.find("format");
  if (it == v.end() || !decode(*it, format, "/format").ok())
    return make_error("the process image has no format version");
  if (format > kProcessImageFormat)
    return errorf(
        "the process image has format {}, newer than this ckpt reads ({}); restore it with a "
        "newer ckpt",
        format, kProcessImageFormat);
  if (format < kOldestReadable)
    return errorf(
        "the process image has format {}, older than this ckpt reads ({}); restore it with the "
        "ckpt that wrote it",
        format, kOldestReadable);
  if (auto a = v.find("arch"); a != v.end() && a->is_string() && *a != arch::kName)
    return errorf("the process image was made on {}, this is {}", a->get<std::string>(),
                  arch::kName);
  return {};
}

}  // namespace

std::vector<std::byte> encode_image(const ImageRoot& root) {
  return to_cbor(encode(root));
}

Result<ImageRoot> decode_image(std::span<const std::byte> bytes) {
  Status checked = check_cbor(bytes);
  if (!checked.ok()) return checked.error().wrap("the process image is not valid");
  auto entries = cbor_map_entries(bytes);
  if (!entries.ok()) return make_error("the process image is not a record");
  // Every entry but the processes parsed here; those after the version is known to be read.
  Value v = Value::object();
  std::span<const std::byte> processes;
  for (auto& e : *entries) {
    bool array = !e.value.empty() && (static_cast<uint8_t>(e.value[0]) >> 5) == 4;
    if (e.key == "processes" && array) {
      processes = e.value;
      v["processes"] = Value::array();
      continue;
    }
    CKPT_TRY_ASSIGN(v[std::string(e.key)], parse_checked_cbor(e.value, "the process image"));
  }
  CKPT_TRY(check_version(v));
  ImageRoot root;
  Status st = decode(v, root, "");
  if (st.ok() && !processes.empty()) st = decode_processes(processes, root.processes);
  if (st.ok()) st = validate(root);
  if (!st.ok()) return st.error().wrap("the process image is malformed");
  return root;
}

}  // namespace ckpt::schema
