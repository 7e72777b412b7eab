#pragma once
// A small but complete process image (two processes, threads, mappings with saved pages, open
// files of several kinds, shared memory, a deleted file): the fuzzers mutate its bytes, so that
// they start deep inside the format instead of at random bytes.
#include "image/schema/records.hpp"

namespace ckpt::fuzz {

inline schema::ProcessRecord sample_process(int32_t pid, int32_t ppid, uint32_t first_file) {
  schema::ProcessRecord p;
  p.pid = pid;
  p.tree.ppid = ppid;
  p.tree.pgid = pid;
  p.tree.sid = pid;
  p.tree.session = schema::SessionPlan::lead;
  p.task.exe = "/bin/true";
  p.task.cwd = "/";
  p.task.root = "/";
  p.task.rlimits.resize(3, {1024, 4096});
  p.task.mm.auxv = {1, 2, 3, 4, 0, 0, 0, 0};
  schema::ThreadRecord t;
  t.tid = pid;
  t.comm = "sample";
  t.xstate.assign(576, 0);
  t.pending.push_back(schema::Bytes(128, 0));
  p.threads.push_back(t);
  t.tid = pid + 1;
  p.threads.push_back(t);
  schema::Vma heap;
  heap.start = 0x10000, heap.end = 0x20000, heap.prot = 3, heap.kind = "heap";
  heap.path = "[heap]", heap.content = schema::Content::private_pages;
  heap.pages = {{0x10000, 0x11000}, {0x18000, 0x1a000}};
  heap.vm_flags = {"rd", "wr"};
  schema::Vma shm;
  shm.start = 0x30000, shm.end = 0x31000, shm.prot = 3, shm.shared = true, shm.kind = "file";
  shm.path = "/dev/zero", shm.deleted = true, shm.content = schema::Content::all, shm.shm = 0;
  p.memory.vmas = {heap, shm};
  p.memory.page_bytes = 0x3000;
  p.signals.actions.push_back({15, 0x4000, 0x4000000, 0x5000, 0});
  p.timers.posix.push_back({0, 1, 0, 14, 0, 0, {1, 0}, {0, 500}});
  p.seccomp_filters.push_back({0, -1, 0, schema::Bytes(8, 6)});
  p.fds = {{0, first_file, false}, {1, first_file + 1, true}, {7, first_file + 1, false}};
  return p;
}

inline schema::ImageRoot sample_image() {
  schema::ImageRoot image;
  image.ckpt_version = "0.1.0";
  image.root_pid = 4000;
  image.processes = {sample_process(4000, 1, 0), sample_process(4010, 4000, 2)};
  image.processes[1].tree.session = schema::SessionPlan::inherit;
  image.processes[1].tree.group = schema::GroupPlan::join;
  image.processes[1].tree.leader = 4000;
  schema::ProcessRecord zombie;
  zombie.pid = 4020;
  zombie.tree.ppid = 4000;
  zombie.zombie = schema::ZombieRecord{9, "gone"};
  image.processes.push_back(zombie);
  auto file = [](uint32_t id, std::string kind, std::string path, schema::Value payload) {
    schema::OpenFile of;
    of.id = id;
    of.kind = std::move(kind);
    of.path = std::move(path);
    of.payload = std::move(payload);
    return of;
  };
  image.open_files = {
      file(0, "file", "/etc/hostname", {{"size", 10}, {"directory", false}}),
      file(1, "pipe", "pipe:[77]", {{"ino", 77}, {"data", schema::Value::binary({1, 2, 3})}}),
      file(2, "eventfd", "anon_inode:[eventfd]", {{"count", 5}, {"semaphore", true}}),
      file(3, "deleted", "/tmp/gone", {{"deleted_id", 0}}),
  };
  image.processes[0].locks.push_back({schema::LockKind::posix, false, 0, 9, 0, false});
  image.open_files[3].locks.push_back(
      {schema::LockKind::flock, true, 0, std::nullopt, std::nullopt, false});
  image.deleted_files.push_back({0, "/tmp/gone", 12, 0600, 0, 0});
  image.shm_objects.push_back({0, "/dev/zero", 4096, {{0, 4096}}, std::nullopt});
  image.shm_objects.push_back({1, "/memfd:ring", 8192, {{0, 4096}}, 0x5});
  image.vdso.hash = 42;
  image.vdso.image = schema::Bytes(64, 0x90);
  return image;
}

}  // namespace ckpt::fuzz
