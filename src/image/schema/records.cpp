#include "image/schema/records.hpp"

#include "image/schema/validate.hpp"

namespace ckpt::schema {

std::vector<std::byte> encode_image(const ImageRoot& root) {
  return to_cbor(encode(root));
}

Result<ImageRoot> decode_image(std::span<const std::byte> bytes) {
  CKPT_TRY_ASSIGN(Value v, from_cbor(bytes, "the process image"));
  if (!v.is_object()) return make_error("the process image is not a record");
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
  ImageRoot root;
  Status st = decode(v, root, "");
  if (st.ok()) st = validate(root);
  if (!st.ok()) return st.error().wrap("the process image is malformed");
  return root;
}

}  // namespace ckpt::schema
