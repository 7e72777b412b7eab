#pragma once
// Files: every descriptor of every process, as a number for an open file. Open files (what
// open() made: flags, offset, the object) are tree-wide records saved once however many
// descriptors and processes share them (dup, fork; found with kcmp). Each kind of open file is a
// plug-in (resources/fds/); this is the dispatcher that runs their phases.
#include <string>
#include <utility>
#include <vector>

#include "resources/context.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/inherit_fd.hpp"

namespace ckpt::files {

// Records every descriptor of ctx.pid in ctx.rec.fds, describing each open file the tree has not
// met yet through the kind that claims it. A descriptor no kind can save fails the dump, naming
// it.
Status dump(DumpContext& ctx, const fds::DumpFlags& flags);

// Once every process is dumped: each kind's link phase over the tree's open files.
Status link(const std::vector<DumpContext*>& procs);

// In the restorer: opens every open file of the image, by id.
Result<fds::OpenedFiles> recreate(const fds::RecreateEnv& env,
                                  const std::vector<InheritFd>& inherit);
// The key under which the restorer hands open file `id` to the puppets.
std::string handed_key(uint32_t id);
// In the restorer once every process exists (not yet running): the owners of O_ASYNC signals,
// set on the open files it handed to the processes.
Status set_owners(const schema::ImageRoot& image, const HandedFds& handed);

// In a puppet before it is taken over: closes what it inherited except the handed fds (moved
// above every fd of the image; their new numbers are written back), puts every descriptor of
// the image at its number, then lets each kind settle (epoll registrations, ...). Descriptors of
// open files opened after the tree (fds::FdKind::opened_after_tree) are left to
// place_after_tree().
Status restore_in_puppet(const schema::ImageRoot& image, size_t index, HandedFds& handed);

// In the restorer once every process exists: the open files that only then can be opened (but
// those handed over already, by --inherit-fd), by id.
Result<fds::OpenedFiles> open_after_tree(const schema::ImageRoot& image, const HandedFds& handed);
// In a process being built (ctx.late_files set): its descriptors of those open files, each taken
// from the restorer (pidfd_getfd) and put at its number, then each kind's settle_late().
Status place_after_tree(RestoreContext& ctx);

}  // namespace ckpt::files
