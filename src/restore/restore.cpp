#include "restore/restore.hpp"

namespace ckpt {

Result<RestoreResult> restore_process(const image::Store&, const RestoreOptions&) {
  return errorf("restore: the engine is not built yet");
}

}  // namespace ckpt
