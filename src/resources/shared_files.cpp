#include "resources/shared_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <map>
#include <set>

#include "common/hex.hpp"
#include "proc/misc.hpp"
#include "resources/deleted_files.hpp"
#include "resources/files.hpp"
#include "resources/unix_sockets.hpp"

namespace ckpt::shared_files {
namespace {

namespace fs = std::filesystem;

struct FdRef {
  DumpContext* ctx;
  json* entry;
  const std::vector<DumpContext*>& procs;  // the whole tree
};

bool is_event_fd(const json& f) {
  return f["type"] == "eventfd" || f["type"] == "signalfd" || f["type"] == "timerfd" ||
         f["type"] == "epoll";
}

std::string read_or_write(const json& f) {
  return (f["flags"].get<int>() & O_ACCMODE) == O_RDONLY ? "r" : "w";
}

// The first process outside the tree with an fd linking to `want` ("pipe:[INO]"), or 0. Scans
// every process's fds, so it is asked only about pipes and sockets with one end in the tree.
pid_t outside_holder(const std::string& want, const std::set<pid_t>& tree) {
  std::error_code ec;
  for (auto& dir : fs::directory_iterator("/proc", ec)) {
    std::string name = dir.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    pid_t pid = std::stoi(name);
    if (tree.count(pid) || pid == ::getpid()) continue;
    std::error_code fd_ec;
    for (auto& fd : fs::directory_iterator(dir.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      if (fs::read_symlink(fd.path(), link_ec).string() == want) return pid;
    }
  }
  return 0;
}

// A pipe with an end outside the tree carries data ckpt cannot follow: refused. A pipe whose
// other end nobody holds any more (a child that wrote its output and ended) comes back the same
// way, with that end closed.
Status check_lone_end(const std::vector<FdRef>& ends, uint64_t ino) {
  std::set<pid_t> tree;
  for (auto* ctx : ends.front().procs) tree.insert(ctx->pid);
  pid_t holder = outside_holder(fmt::format("pipe:[{}]", ino), tree);
  if (holder != 0)
    return errorf(
        "pid {}: pipe:[{}] has its other end in pid {}, outside the dumped processes, which ckpt "
        "cannot save",
        ends.front().ctx->pid, ino, holder);
  return {};
}

// A pipe with ends in several processes is made once by the restorer.
Status link_pipes(const std::vector<FdRef>& fds, json& shared) {
  std::map<uint64_t, std::vector<FdRef>> pipes;
  for (auto& r : fds)
    if ((*r.entry)["type"] == "pipe") pipes[(*r.entry)["ino"].get<uint64_t>()].push_back(r);
  for (auto& [ino, ends] : pipes) {
    int mask = 0;
    bool several = false;
    const json* reader = nullptr;
    for (auto& e : ends) {
      mask |= read_or_write(*e.entry) == "r" ? 1 : 2;
      several |= e.ctx != ends.front().ctx;
      if (e.entry->contains("data")) reader = e.entry;
    }
    if (mask != 3) CKPT_TRY(check_lone_end(ends, ino));
    if (!several) continue;
    std::string key = fmt::format("pipe:{}", ino);
    for (auto& e : ends) (*e.entry)["shared"] = key;
    shared.push_back({{"key", key},
                      {"type", "pipe"},
                      {"data", reader ? (*reader)["data"] : json("")},
                      {"pipe_size", reader ? reader->value("pipe_size", 0) : 0}});
  }
  return {};
}

bool could_share(const json& a, const json& b) {
  if (a["type"] != b["type"]) return false;
  if (!a.contains("ino")) return true;  // event fds: one anonymous inode for all
  return a["ino"] == b["ino"] && a["dev"] == b["dev"];
}

Result<bool> same_open_file(const FdRef& a, const FdRef& b) {
  return proc::same_open_file(a.ctx->pid, (*a.entry)["fd"].get<int>(), b.ctx->pid,
                              (*b.entry)["fd"].get<int>());
}

// Marks `b` (and its open file's first holder `a`) as one shared open file.
Status share(const FdRef& a, const FdRef& b, json& shared) {
  if (is_event_fd(*b.entry))
    return errorf("pid {}: fd {} ({}) is shared with pid {}, which ckpt cannot save yet",
                  b.ctx->pid, (*b.entry)["fd"].get<int>(), (*b.entry)["type"].get<std::string>(),
                  a.ctx->pid);
  if (!a.entry->contains("shared")) {
    std::string key = fmt::format("file:{}", shared.size());
    (*a.entry)["shared"] = key;
    json copy = *a.entry;
    copy.erase("fd");
    copy["key"] = key;
    shared.push_back(std::move(copy));
  }
  (*b.entry)["shared"] = (*a.entry)["shared"];
  return {};
}

// A FIFO's data is refilled once: all its fds must share one open file.
Status check_fifos(const std::vector<FdRef>& fds) {
  std::map<std::string, const FdRef*> first;
  for (auto& r : fds) {
    if ((*r.entry)["type"] != "fifo") continue;
    std::string path = (*r.entry)["path"];
    auto [it, added] = first.emplace(path, &r);
    if (added || it->second->ctx == r.ctx) continue;
    if (!r.entry->contains("shared") || (*r.entry)["shared"] != (*it->second->entry)["shared"])
      return errorf("pid {}: FIFO {} is also open in pid {}, which ckpt cannot save yet",
                    r.ctx->pid, path, it->second->ctx->pid);
  }
  return {};
}

Status link_open_files(const std::vector<FdRef>& fds, json& shared) {
  std::vector<const FdRef*> firsts;  // the first fd of each open file seen so far
  for (auto& r : fds) {
    const json& f = *r.entry;
    if (f["type"] == "pipe" || f["type"] == "unix" || f["type"] == "inherit" ||
        f.contains("dup_of"))
      continue;
    const FdRef* match = nullptr;
    for (auto* a : firsts) {
      if (a->ctx == r.ctx || !could_share(*a->entry, f)) continue;
      CKPT_TRY_ASSIGN(bool same, same_open_file(*a, r));
      if (same) {
        match = a;
        break;
      }
    }
    if (match)
      CKPT_TRY(share(*match, r, shared));
    else
      firsts.push_back(&r);
  }
  return check_fifos(fds);
}

Result<ScopedFd> open_fifo(const json& f) {
  std::string path = f["path"];
  // The data must be in the FIFO before its real end opens, and an end opens without blocking
  // only while another exists: a helper end, open for both, does both.
  ScopedFd helper(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!helper) return sys_error(fmt::format("open FIFO {}", path));
  std::string data = from_hex<std::string>(f.value("data", std::string()));
  if (!data.empty() && ::write(helper.get(), data.data(), data.size()) != ssize_t(data.size()))
    return sys_error(fmt::format("refill FIFO {}", path));
  return files::open_description(f);
}

Status open_pipe(const json& p, std::vector<std::pair<std::string, ScopedFd>>& out) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) < 0) return sys_error("pipe2");
  ScopedFd r(ends[0]), w(ends[1]);
  int size = p.value("pipe_size", 0);
  if (size > 0) (void)::fcntl(w.get(), F_SETPIPE_SZ, size);
  std::string data = from_hex<std::string>(p["data"].get<std::string>());
  if (!data.empty() && ::write(w.get(), data.data(), data.size()) != ssize_t(data.size()))
    return sys_error("refill pipe");
  std::string key = p["key"];
  out.emplace_back("shared:" + key + ":r", std::move(r));
  out.emplace_back("shared:" + key + ":w", std::move(w));
  return {};
}

Result<ScopedFd> open_file(const json& f, const HandedFds& recreated) {
  if (f["type"] == "fifo") return open_fifo(f);
  if (f["type"] != "deleted") return files::open_description(f);
  int fd = recreated.find(deleted_files::handed_key(f["deleted_id"].get<int>()));
  if (fd < 0) return errorf("deleted file {} was not recreated", f["path"].get<std::string>());
  return files::open_description(f, fmt::format("/proc/self/fd/{}", fd));
}

}  // namespace

Status link(const std::vector<DumpContext*>& procs, json& shared) {
  shared = json::array();
  std::vector<FdRef> fds;
  for (auto* ctx : procs)
    if (!ctx->zombie)
      for (auto& f : ctx->image["files"]["fds"]) fds.push_back({ctx, &f, procs});
  std::set<pid_t> tree;
  std::vector<unix_sockets::FdOf> all;
  for (auto& r : fds) {
    tree.insert(r.ctx->pid);
    all.push_back({r.ctx->pid, r.entry});
  }
  CKPT_TRY(unix_sockets::link(all, shared,
                              [&](const std::string& want) { return outside_holder(want, tree); }));
  CKPT_TRY(link_pipes(fds, shared));
  return link_open_files(fds, shared);
}

Result<std::vector<std::pair<std::string, ScopedFd>>> open_all(const json& shared,
                                                               const HandedFds& recreated) {
  std::vector<std::pair<std::string, ScopedFd>> out;
  for (auto& f : shared) {
    if (f["type"] == "pipe") {
      CKPT_TRY(open_pipe(f, out));
      continue;
    }
    if (f["type"] == "unix") {
      Status made = unix_sockets::open_pair(f, out);
      if (!made.ok()) return made.error().wrap("restore a unix socket pair");
      continue;
    }
    auto fd = open_file(f, recreated);
    if (!fd.ok())
      return fd.error().wrap(fmt::format("restore the file {} shared by several processes",
                                         f.value("path", std::string("?"))));
    out.emplace_back("shared:" + f["key"].get<std::string>(), std::move(*fd));
  }
  return out;
}

std::string handed_key(const json& fd_entry) {
  std::string key = "shared:" + fd_entry["shared"].get<std::string>();
  if (fd_entry["type"] == "pipe") key += ":" + read_or_write(fd_entry);
  return key;
}

}  // namespace ckpt::shared_files
