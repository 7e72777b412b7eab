#include "dump/dump.hpp"

namespace ckpt {

Result<DumpResult> dump_process(image::Store&, const DumpOptions& opts) {
  return errorf("dump pid {}: the engine is not built yet", opts.pid);
}

}  // namespace ckpt
