#pragma once
// Shared memory objects: shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, "/dev/zero
// (deleted)" in maps) and memfds mapped shared. Each object is saved once however many mappings
// and processes share it (section "shm.N", its data ranges only), recreated once by the restorer
// and handed to every puppet, which maps it where each mapping was: writes of one process are
// seen by the others again.
#include <sys/stat.h>

#include <string>
#include <utility>
#include <vector>

#include "common/scoped_fd.hpp"
#include "proc/maps.hpp"
#include "resources/context.hpp"

namespace ckpt::shared_memory {

// Whether a mapping is a view of a shared memory object.
bool is_object(const proc::MapEntry& m);

// Gives the mapping `v` the id of its object, saving the object's contents the first time the
// tree meets it and recording it in the image's shm_objects.
Status save(DumpContext& ctx, const proc::MapEntry& m, schema::Vma& v);
// The id of the memfd that fd `fd` of `holder` is (a process of the tree, or ckpt holding a copy
// of one in flight; its /proc link "/memfd:NAME (deleted)", `st` its stat), saved as save()
// does: the same object as the mappings of that memfd.
Result<int32_t> save_memfd(DumpContext& ctx, pid_t holder, int fd, const std::string& link,
                           const struct stat& st);

// The parts of a tmpfs file (shared memory) that hold data, as (offset, length): only they are
// saved. Other savers of shared memory (System V segments) use these too.
Result<std::vector<std::pair<uint64_t, uint64_t>>> data_ranges(int fd, uint64_t size);
// Streams those ranges of `fd` into a section, then finishes it.
Status copy_out(int fd, const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                image::SectionWriter& out, const std::string& what);
// Writes the ranges `data` of an object of `size` bytes, read in order from `section`, into `fd`.
Status fill_from_section(const image::Store& store, const image::GenerationInfo& gen,
                         const std::string& section, const std::vector<schema::Range>& data,
                         uint64_t size, int fd);

// The key of the handed fd of object `id`.
std::string handed_key(int id);

// In the restorer: every object of the image, filled with its contents (a memfd sealed as it
// was), by id.
Result<std::vector<std::pair<int32_t, ScopedFd>>> recreate(
    const image::Store& store, const image::GenerationInfo& gen,
    const std::vector<schema::ShmObject>& objects);

}  // namespace ckpt::shared_memory
