#include "supervisor/run_state.hpp"

#include <time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/fs_util.hpp"
#include "image/store.hpp"

namespace ckpt::supervisor {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

}  // namespace

json to_json(const RunState& s) {
  return json{{"supervisor_pid", s.supervisor_pid},
              {"program", s.program},
              {"phase", s.phase},
              {"started_unix_ns", s.started_unix_ns},
              {"child_pid", s.child_pid},
              {"child_started_unix_ns", s.child_started_unix_ns},
              {"child_start_ticks", s.child_start_ticks},
              {"child_origin", s.child_origin},
              {"restarts", s.restarts},
              {"last_crash", s.last_crash},
              {"last_crash_unix_ns", s.last_crash_unix_ns},
              {"checkpoints", s.checkpoints},
              {"last_generation", s.last_generation},
              {"last_checkpoint_unix_ns", s.last_checkpoint_unix_ns},
              {"last_checkpoint_bytes", s.last_checkpoint_bytes},
              {"last_frozen_ms", s.last_frozen_ms},
              {"last_checkpoint_error", s.last_checkpoint_error},
              {"requests_served", s.requests_served},
              {"last_request_ok", s.last_request_ok},
              {"last_request_message", s.last_request_message},
              {"exit_code", s.exit_code},
              {"ended_unix_ns", s.ended_unix_ns}};
}

namespace {

template <typename T>
void get(const json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it != j.end() && !it->is_null()) out = it->get<T>();
}

RunState from_json(const json& j) {
  RunState s;
  get(j, "supervisor_pid", s.supervisor_pid);
  get(j, "program", s.program);
  get(j, "phase", s.phase);
  get(j, "started_unix_ns", s.started_unix_ns);
  get(j, "child_pid", s.child_pid);
  get(j, "child_started_unix_ns", s.child_started_unix_ns);
  get(j, "child_start_ticks", s.child_start_ticks);
  get(j, "child_origin", s.child_origin);
  get(j, "restarts", s.restarts);
  get(j, "last_crash", s.last_crash);
  get(j, "last_crash_unix_ns", s.last_crash_unix_ns);
  get(j, "checkpoints", s.checkpoints);
  get(j, "last_generation", s.last_generation);
  get(j, "last_checkpoint_unix_ns", s.last_checkpoint_unix_ns);
  get(j, "last_checkpoint_bytes", s.last_checkpoint_bytes);
  get(j, "last_frozen_ms", s.last_frozen_ms);
  get(j, "last_checkpoint_error", s.last_checkpoint_error);
  get(j, "requests_served", s.requests_served);
  get(j, "last_request_ok", s.last_request_ok);
  get(j, "last_request_message", s.last_request_message);
  get(j, "exit_code", s.exit_code);
  get(j, "ended_unix_ns", s.ended_unix_ns);
  return s;
}

}  // namespace

int64_t unix_now_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

Status write_run_state(const fs::path& store_dir, const RunState& st) {
  std::string text = to_json(st).dump(2) + "\n";
  // 0600 like the rest of the store: the program's command line may hold secrets.
  return write_file_atomic(store_dir, kRunStateFile, as_bytes(text), 0600);
}

Result<RunState> read_run_state(const fs::path& store_dir) {
  auto path = store_dir / kRunStateFile;
  auto bytes = read_regular_file(path);
  if (!bytes.ok()) {
    if (bytes.error().errnum == ENOENT)
      return make_error(fmt::format("{}: no run has used this store ({} is missing)",
                                    store_dir.string(), kRunStateFile),
                        ENOENT);
    return bytes.error();
  }
  json j = json::parse(reinterpret_cast<const char*>(bytes->data()),
                       reinterpret_cast<const char*>(bytes->data()) + bytes->size(), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return errorf("{}: not a valid run state file", path.string());
  try {
    return from_json(j);
  } catch (const json::exception& e) {
    return errorf("{}: {}", path.string(), e.what());
  }
}

bool holds_store_lock(pid_t pid, const fs::path& store_dir) {
  std::error_code ec;
  auto lock = fs::canonical(store_dir / "lock", ec);
  if (ec) return false;
  fs::path fds = fmt::format("/proc/{}/fd", pid);
  for (auto it = fs::directory_iterator(fds, ec); !ec && it != fs::end(it); it.increment(ec)) {
    std::error_code ec2;
    if (fs::read_symlink(it->path(), ec2) == lock) return true;
  }
  return false;
}

Result<fs::path> store_of_supervisor(pid_t pid) {
  fs::path fds = fmt::format("/proc/{}/fd", pid);
  std::error_code ec;
  auto it = fs::directory_iterator(fds, ec);
  if (ec) return sys_error(ec.value(), fmt::format("pid {}: cannot list {}", pid, fds.string()));
  for (; !ec && it != fs::end(it); it.increment(ec)) {
    std::error_code ec2;
    fs::path target = fs::read_symlink(it->path(), ec2);
    if (ec2 || target.filename() != "lock") continue;
    if (image::is_store(target.parent_path()) && fs::exists(target.parent_path() / kRunStateFile))
      return target.parent_path();
  }
  return errorf("pid {} is not a 'ckpt run' supervisor (it holds no store lock)", pid);
}

}  // namespace ckpt::supervisor
