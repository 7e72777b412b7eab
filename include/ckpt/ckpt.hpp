#pragma once
// Public C++ API of libckpt: RAII wrappers over the C API in ckpt.h that return results instead
// of -1/errno. Header-only over the stable C ABI.
//
// Sections:
//   - Application-level state checkpoints: ckpt::AppState (over ckpt_state_*).
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "ckpt/ckpt.h"

namespace ckpt {

// ============================================================================================
// Application-level state checkpoints: ckpt::AppState
// ============================================================================================

// A failure: the errno value (0 if none applies) and a one-line message.
struct AppError {
  int errnum = 0;
  std::string message;
};

// A value or an AppError.
template <typename T>
class [[nodiscard]] AppResult {
 public:
  AppResult(T value) : value_(std::move(value)) {}
  AppResult(AppError error) : error_(std::move(error)) {}

  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  // Meaningful only when !ok().
  const AppError& error() const { return error_; }

 private:
  std::optional<T> value_;
  AppError error_;
};

struct AppOk {};
using AppStatus = AppResult<AppOk>;

struct AppStateOptions {
  std::string dir;              // "" = the current directory when opened
  unsigned keep = 0;            // keep only this many newest checkpoints; 0 = all
  bool clean_at_start = false;  // open() removes existing checkpoints
};

struct AppRestoreOutcome {
  bool restored = false;             // false: no valid checkpoint, nothing was changed
  std::string path;                  // the file loaded
  std::vector<std::string> skipped;  // "checkpoint.<ts>.dat: <why>", newest first
};

// A set of registered state items and the options of their checkpoints (see ckpt.h for the
// file naming, ordering and validity rules). Movable, not copyable.
class AppState {
 public:
  using Saver = std::function<std::vector<std::byte>()>;
  // Returns false to reject the bytes (the file is then treated as invalid).
  using Loader = std::function<bool(std::span<const std::byte>)>;

  static AppResult<AppState> open(const AppStateOptions& opts = {}) {
    ckpt_state_options c;
    ckpt_state_options_init(&c);
    c.dir = opts.dir.c_str();
    c.keep = opts.keep;
    c.clean_at_start = opts.clean_at_start ? 1 : 0;
    ckpt_state* h = ckpt_state_open(&c);
    if (!h) {
      int e = errno;
      return AppError{e, "open checkpoint state for '" + (opts.dir.empty() ? "." : opts.dir) +
                             "': " + std::strerror(e)};
    }
    return AppState(h);
  }

  // Registers `len` bytes at `addr`; they must stay valid while this object is used.
  AppStatus add_bytes(std::string_view name, void* addr, size_t len) {
    return status(ckpt_state_add_range(handle_.get(), std::string(name).c_str(), addr, len));
  }

  // Registers a trivially copyable object by its bytes.
  template <typename T>
  requires std::is_trivially_copyable_v<T> AppStatus add_object(std::string_view name, T& object) {
    return add_bytes(name, &object, sizeof(T));
  }

  // Registers a serializer/deserializer pair. Exceptions from them count as failures.
  AppStatus add_serialized(std::string_view name, Saver save, Loader load) {
    auto fns = std::make_unique<Fns>(Fns{std::move(save), std::move(load)});
    int rc = ckpt_state_add_fns(handle_.get(), std::string(name).c_str(), &save_trampoline,
                                &load_trampoline, fns.get());
    if (rc == 0) fns_.push_back(std::move(fns));
    return status(rc);
  }

  // Writes a new checkpoint; returns its path.
  AppResult<std::string> checkpoint() {
    if (ckpt_state_checkpoint(handle_.get()) != 0) return last_error();
    return std::string(ckpt_state_path(handle_.get()));
  }

  // Loads the newest valid checkpoint; an error only when the directory cannot be listed.
  AppResult<AppRestoreOutcome> restore() {
    int rc = ckpt_state_restore(handle_.get());
    if (rc < 0) return last_error();
    AppRestoreOutcome out;
    out.restored = rc == 1;
    if (out.restored) out.path = ckpt_state_path(handle_.get());
    for (size_t i = 0; i < ckpt_state_skipped_count(handle_.get()); ++i)
      out.skipped.emplace_back(ckpt_state_skipped(handle_.get(), i));
    return out;
  }

  // Removes all checkpoints of the directory; returns how many files were removed.
  AppResult<size_t> clean() {
    int rc = ckpt_state_clean(handle_.get());
    if (rc < 0) return last_error();
    return static_cast<size_t>(rc);
  }

  std::string dir() const { return ckpt_state_dir(handle_.get()); }
  ckpt_state* handle() const { return handle_.get(); }

 private:
  struct Fns {
    Saver save;
    Loader load;
  };
  struct Closer {
    void operator()(ckpt_state* h) const { ckpt_state_close(h); }
  };

  explicit AppState(ckpt_state* h) : handle_(h) {}

  AppError last_error() const { return AppError{errno, ckpt_state_error(handle_.get())}; }
  AppStatus status(int rc) const {
    if (rc != 0) return last_error();
    return AppOk{};
  }

  static int save_trampoline(void* user, ckpt_state_buffer* out) {
    try {
      auto bytes = static_cast<Fns*>(user)->save();
      return ckpt_state_buffer_append(out, bytes.data(), bytes.size());
    } catch (...) {
      return -1;
    }
  }
  static int load_trampoline(void* user, const void* data, size_t len) {
    try {
      return static_cast<Fns*>(user)->load({static_cast<const std::byte*>(data), len}) ? 0 : -1;
    } catch (...) {
      return -1;
    }
  }

  std::unique_ptr<ckpt_state, Closer> handle_;
  // unique_ptr keeps each pair at a fixed address (the C side holds it) when AppState moves.
  std::vector<std::unique_ptr<Fns>> fns_;
};

}  // namespace ckpt
