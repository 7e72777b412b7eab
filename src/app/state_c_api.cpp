// The ckpt_state_* C functions: argument checks, errno and message bookkeeping over StateStore.
// Nothing here throws: allocation failures become ENOMEM.
#include <unistd.h>

#include <cerrno>
#include <new>
#include <optional>

#include "app/state_store.hpp"
#include "ckpt/ckpt.h"

struct ckpt_state {
  ckpt::app::StateStore store;
  std::string dir;
  std::string path;
  std::string error;
  std::vector<std::string> skipped;
};

namespace {

// Records `e` on the handle and in errno; returns -1 for the caller to return.
int fail(ckpt_state* st, const ckpt::Error& e) {
  st->error = e.message;
  errno = e.errnum ? e.errnum : EIO;
  return -1;
}

template <typename F>
int guarded(ckpt_state* st, F&& f) {
  if (!st) {
    errno = EINVAL;
    return -1;
  }
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return fail(st, ckpt::Error{ENOMEM, "out of memory"});
  }
}

std::optional<std::filesystem::path> absolute_dir(const char* dir) {
  std::error_code ec;
  std::filesystem::path base = std::filesystem::current_path(ec);
  if (ec) {
    errno = ec.value();
    return std::nullopt;
  }
  if (!dir || !*dir) return base;
  return (base / dir).lexically_normal();
}

}  // namespace

extern "C" {

void ckpt_state_options_init(ckpt_state_options* opts) {
  if (opts) *opts = ckpt_state_options{nullptr, 0, 0};
}

ckpt_state* ckpt_state_open(const ckpt_state_options* opts) {
  ckpt_state_options defaults;
  ckpt_state_options_init(&defaults);
  if (!opts) opts = &defaults;
  try {
    auto dir = absolute_dir(opts->dir);
    if (!dir) return nullptr;
    auto st = std::make_unique<ckpt_state>(
        ckpt_state{ckpt::app::StateStore({*dir, opts->keep}), dir->string(), {}, {}, {}});
    if (opts->clean_at_start) {
      auto r = st->store.clean();
      if (!r.ok()) {
        errno = r.error().errnum ? r.error().errnum : EIO;
        return nullptr;
      }
    }
    return st.release();
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;
    return nullptr;
  }
}

void ckpt_state_close(ckpt_state* st) {
  delete st;
}

int ckpt_state_add_range(ckpt_state* st, const char* name, void* addr, size_t len) {
  return guarded(st, [&] {
    if (!name) return fail(st, ckpt::Error{EINVAL, "item name is NULL"});
    auto r = st->store.add_range(name, addr, len);
    return r.ok() ? 0 : fail(st, r.error());
  });
}

int ckpt_state_add_fns(ckpt_state* st, const char* name, ckpt_state_save_fn save,
                       ckpt_state_load_fn load, void* user) {
  return guarded(st, [&] {
    if (!name) return fail(st, ckpt::Error{EINVAL, "item name is NULL"});
    auto r = st->store.add_fns(name, save, load, user);
    return r.ok() ? 0 : fail(st, r.error());
  });
}

int ckpt_state_buffer_append(ckpt_state_buffer* buf, const void* data, size_t len) {
  if (!buf || (!data && len > 0)) {
    errno = EINVAL;
    return -1;
  }
  try {
    auto* p = static_cast<const std::byte*>(data);
    buf->bytes.insert(buf->bytes.end(), p, p + len);
    return 0;
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;
    return -1;
  }
}

int ckpt_state_checkpoint(ckpt_state* st) {
  return guarded(st, [&] {
    auto r = st->store.checkpoint();
    if (!r.ok()) return fail(st, r.error().wrap("checkpoint"));
    st->path = r->string();
    return 0;
  });
}

int ckpt_state_restore(ckpt_state* st) {
  return guarded(st, [&] {
    st->skipped.clear();
    auto r = st->store.restore();
    if (!r.ok()) return fail(st, r.error().wrap("restore"));
    st->skipped = std::move(r->skipped);
    if (!r->restored) return 0;
    st->path = r->path.string();
    return 1;
  });
}

int ckpt_state_clean(ckpt_state* st) {
  return guarded(st, [&] {
    auto r = st->store.clean();
    if (!r.ok()) return fail(st, r.error());
    return static_cast<int>(*r);
  });
}

const char* ckpt_state_path(const ckpt_state* st) {
  return st ? st->path.c_str() : "";
}

size_t ckpt_state_skipped_count(const ckpt_state* st) {
  return st ? st->skipped.size() : 0;
}

const char* ckpt_state_skipped(const ckpt_state* st, size_t i) {
  return st && i < st->skipped.size() ? st->skipped[i].c_str() : nullptr;
}

const char* ckpt_state_error(const ckpt_state* st) {
  return st ? st->error.c_str() : "";
}

const char* ckpt_state_dir(const ckpt_state* st) {
  return st ? st->dir.c_str() : "";
}

}  // extern "C"
