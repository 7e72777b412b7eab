// Built against the installed libckpt: the C++ API (ckpt.hpp) round trip of one object.
#include <cstdio>

#include <ckpt/ckpt.hpp>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto state = ckpt::AppState::open({.dir = argv[1]});
  if (!state) return 1;
  struct Progress {
    int step = 7;
    double total = 2.5;
  } progress;
  if (!state->add_object("progress", progress)) return 1;
  auto path = state->checkpoint();
  if (!path) {
    std::fprintf(stderr, "checkpoint: %s\n", path.error().message.c_str());
    return 1;
  }
  progress = {};
  auto back = state->restore();
  if (!back || !back->restored || progress.step != 7 || progress.total != 2.5) return 1;
  std::puts("c++ api ok");
  return 0;
}
