#include "app/state_store.hpp"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include <dirent.h>

#include "common/fs_util.hpp"
#include "common/log.hpp"

namespace ckpt::app {
namespace {

constexpr std::string_view kLog = "app";

uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

Status StateStore::check_new_name(const std::string& name) const {
  if (name.empty() || name.size() > kMaxItemNameLength)
    return make_error(
        fmt::format("item name '{}': must be 1 to {} bytes", name, kMaxItemNameLength), EINVAL);
  for (auto& item : items_)
    if (item.name == name)
      return make_error(fmt::format("item '{}' is already registered", name), EEXIST);
  return {};
}

Status StateStore::add_range(std::string name, void* addr, size_t len) {
  CKPT_TRY(check_new_name(name));
  if (!addr && len > 0)
    return make_error(fmt::format("item '{}': null address for {} bytes", name, len), EINVAL);
  items_.push_back(Item{.name = std::move(name), .addr = addr, .len = len});
  return {};
}

Status StateStore::add_fns(std::string name, ckpt_state_save_fn save, ckpt_state_load_fn load,
                           void* user) {
  CKPT_TRY(check_new_name(name));
  if (!save || !load)
    return make_error(fmt::format("item '{}': serializer and deserializer are required", name),
                      EINVAL);
  items_.push_back(Item{.name = std::move(name), .save = save, .load = load, .user = user});
  return {};
}

Result<std::vector<StateItem>> StateStore::collect() const {
  std::vector<StateItem> out;
  out.reserve(items_.size());
  for (auto& item : items_) {
    StateItem si{item.name, {}};
    if (item.save) {
      ckpt_state_buffer buf;
      if (item.save(item.user, &buf) != 0)
        return make_error(fmt::format("serializer of item '{}' failed", item.name), ECANCELED);
      si.bytes = std::move(buf.bytes);
    } else {
      auto* p = static_cast<const std::byte*>(item.addr);
      si.bytes.assign(p, p + item.len);
    }
    out.push_back(std::move(si));
  }
  return out;
}

Result<std::filesystem::path> StateStore::checkpoint() {
  CKPT_TRY_ASSIGN(auto items, collect());
  CKPT_TRY(make_dirs(opts_.dir));
  CKPT_TRY_ASSIGN(auto existing, list_checkpoints(opts_.dir));
  uint64_t now = realtime_ns();
  auto name = checkpoint_file_name(
      next_checkpoint_name(existing, static_cast<int64_t>(now / 1'000'000'000u)));
  auto data = encode_state(now, items);
  CKPT_TRY(write_file_atomic(opts_.dir, name, data, 0600));
  log::info(kLog, "wrote {} ({} bytes)", (opts_.dir / name).string(), data.size());
  apply_retention();
  return opts_.dir / name;
}

void StateStore::apply_retention() const {
  if (opts_.keep == 0) return;
  auto entries = list_checkpoints(opts_.dir);
  if (!entries.ok()) {
    log::warn(kLog, "retention: {}", entries.error().message);
    return;
  }
  for (size_t i = opts_.keep; i < entries->size(); ++i) {
    const auto& path = (*entries)[i].path;
    if (::unlink(path.c_str()) < 0 && errno != ENOENT)
      log::warn(kLog, "retention: remove {}: {}", path.string(), std::strerror(errno));
  }
}

Status StateStore::match(const std::vector<StateItem>& file_items) const {
  for (auto& fi : file_items) {
    auto it = std::find_if(items_.begin(), items_.end(),
                           [&](const Item& i) { return i.name == fi.name; });
    if (it == items_.end()) return errorf("item '{}' is not registered", fi.name);
    if (!it->save && fi.bytes.size() != it->len)
      return errorf("item '{}' has {} bytes, {} registered", fi.name, fi.bytes.size(), it->len);
  }
  for (auto& item : items_) {
    bool found = std::any_of(file_items.begin(), file_items.end(),
                             [&](const StateItem& fi) { return fi.name == item.name; });
    if (!found) return errorf("registered item '{}' is missing", item.name);
  }
  if (file_items.size() != items_.size()) return make_error("an item appears twice");
  return {};
}

Status StateStore::apply(const std::vector<StateItem>& file_items) const {
  // Deserializers first: they may still reject their bytes, and byte ranges are then untouched.
  for (auto& fi : file_items) {
    auto it = std::find_if(items_.begin(), items_.end(),
                           [&](const Item& i) { return i.name == fi.name; });
    if (it->load && it->load(it->user, fi.bytes.data(), fi.bytes.size()) != 0)
      return errorf("deserializer of item '{}' rejected its {} bytes", fi.name, fi.bytes.size());
  }
  for (auto& fi : file_items) {
    auto it = std::find_if(items_.begin(), items_.end(),
                           [&](const Item& i) { return i.name == fi.name; });
    if (!it->load && !fi.bytes.empty()) std::memcpy(it->addr, fi.bytes.data(), fi.bytes.size());
  }
  return {};
}

Result<RestoreOutcome> StateStore::restore() {
  CKPT_TRY_ASSIGN(auto entries, list_checkpoints(opts_.dir));
  RestoreOutcome out;
  for (auto& e : entries) {
    auto fail = [&](const Error& err) {
      out.skipped.push_back(fmt::format("{}: {}", e.path.filename().string(), err.message));
      log::info(kLog, "restore: skipped {}", out.skipped.back());
    };
    auto data = read_file(e.path);
    if (!data.ok()) {
      fail(data.error());
      continue;
    }
    auto file = decode_state(*data);
    if (!file.ok()) {
      fail(file.error());
      continue;
    }
    Status st = match(file->items);
    if (st.ok()) st = apply(file->items);
    if (!st.ok()) {
      fail(st.error());
      continue;
    }
    out.restored = true;
    out.path = e.path;
    return out;
  }
  return out;
}

Result<size_t> StateStore::clean() {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(opts_.dir.c_str()), ::closedir);
  if (!d) {
    if (errno == ENOENT) return size_t{0};
    return sys_error(fmt::format("clean checkpoints in {}", opts_.dir.string()));
  }
  std::vector<std::string> doomed;
  errno = 0;
  while (dirent* e = ::readdir(d.get())) {
    if (parse_checkpoint_file_name(e->d_name) || is_checkpoint_temp_file(e->d_name))
      doomed.emplace_back(e->d_name);
    errno = 0;
  }
  if (int err = errno) return sys_error(err, fmt::format("list {}", opts_.dir.string()));
  for (auto& name : doomed) {
    auto path = opts_.dir / name;
    if (::unlink(path.c_str()) < 0 && errno != ENOENT)
      return sys_error(fmt::format("remove {}", path.string()));
  }
  return doomed.size();
}

}  // namespace ckpt::app
