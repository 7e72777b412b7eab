#pragma once
// StateStore: the implementation behind the ckpt_state_* C API (include/ckpt/ckpt.h). It owns
// the registered items and the options, and writes, lists, loads and removes checkpoint files.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "app/state_file.hpp"
#include "ckpt/ckpt.h"
#include "common/result.hpp"

// What a serializer appends to (declared opaque in ckpt.h).
struct ckpt_state_buffer {
  std::vector<std::byte> bytes;
};

namespace ckpt::app {

struct StateOptions {
  std::filesystem::path dir;  // absolute
  unsigned keep = 0;          // 0 = keep all
};

struct RestoreOutcome {
  bool restored = false;
  std::filesystem::path path;
  std::vector<std::string> skipped;  // one line per skipped file, newest first
};

class StateStore {
 public:
  explicit StateStore(StateOptions opts) : opts_(std::move(opts)) {}

  Status add_range(std::string name, void* addr, size_t len);
  Status add_fns(std::string name, ckpt_state_save_fn save, ckpt_state_load_fn load, void* user);

  // Writes a new checkpoint file and returns its path.
  Result<std::filesystem::path> checkpoint();
  // A directory that cannot be listed is an error; invalid files are skipped, not errors.
  Result<RestoreOutcome> restore();
  // Removes checkpoint files and leftover temporary files; returns how many.
  Result<size_t> clean();

  const StateOptions& options() const { return opts_; }

 private:
  struct Item {
    std::string name;
    void* addr = nullptr;  // a byte range when save is null
    size_t len = 0;
    ckpt_state_save_fn save = nullptr;
    ckpt_state_load_fn load = nullptr;
    void* user = nullptr;
  };

  Status check_new_name(const std::string& name) const;
  Result<std::vector<StateItem>> collect() const;
  // Checks the file holds exactly the registered items; the error says which one differs.
  Status match(const std::vector<StateItem>& items) const;
  Status apply(const std::vector<StateItem>& items) const;
  void apply_retention() const;

  StateOptions opts_;
  std::vector<Item> items_;
};

}  // namespace ckpt::app
