#pragma once
// Shared memory objects: shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, "/dev/zero
// (deleted)" in maps) and memfds mapped shared. Each object is saved once however many mappings
// and processes share it (section "shm.N", its data ranges only), recreated once by the restorer
// and handed to every puppet, which maps it where each mapping was: writes of one process are
// seen by the others again.
#include <string>
#include <utility>
#include <vector>

#include "common/scoped_fd.hpp"
#include "proc/maps.hpp"
#include "resources/context.hpp"

namespace ckpt::shared_memory {

// Whether a mapping is a view of a shared memory object.
bool is_object(const proc::MapEntry& m);

// Gives the mapping `j` the id of its object ("shm"), saving the object's contents the first
// time the tree meets it and recording it in `objects`.
Status save(DumpContext& ctx, const proc::MapEntry& m, json& j, json& objects);

// The key of the handed fd of object `id`.
std::string handed_key(int id);

// In the restorer: every object a process's image records, filled with its contents.
Result<std::vector<std::pair<std::string, ScopedFd>>> recreate(const image::Store& store,
                                                               const image::GenerationInfo& gen,
                                                               const json& image);

}  // namespace ckpt::shared_memory
