#pragma once
// What the restore relies on beyond each field's type: the processes form a tree listed parents
// first, references between records lead somewhere (descriptors to open files, mappings to
// shared memory objects, threads to seccomp filters), ranges are ordered, aligned and inside
// what contains them. An image that passes can be walked without further bounds checks; the
// first problem is named by its path.
#include "common/result.hpp"
#include "image/schema/records.hpp"

namespace ckpt::schema {

Status validate(const ImageRoot& image);

}  // namespace ckpt::schema
