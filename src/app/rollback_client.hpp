#pragma once
// The program's side of the rollback API: its connection to the helper.
#include <sys/types.h>

#include "app/rollback_shared.hpp"
#include "common/result.hpp"

namespace ckpt::rollback {

struct Client {
  pid_t pid = 0;  // the process this belongs to: a forked child starts its own helper
  void* base = nullptr;
  RwArea* rw = nullptr;
  const RoArea* ro = nullptr;
  int sock = -1;  // SOCK_SEQPACKET to the helper: a byte wakes it, its closing ends it
  pid_t helper = 0;
  int helper_pidfd = -1;
  bool dead = false;  // the helper is gone: the next call starts a new one
};

// Maps the shared area, starts the helper (the program re-executed with kHelperEnv set) and
// waits until it answers.
Result<Client> spawn_helper();
// Unmaps and closes what `c` holds (a forked child dropping its parent's connection, or a dead
// helper's leftovers) and reaps the helper if it is our child and gone.
void discard_client(Client& c);
// Whether the helper process has ended.
bool helper_gone(const Client& c);
// Sends one request (rw->req must be filled) and waits for the answer. False if the helper died.
bool exchange(Client& c);

}  // namespace ckpt::rollback
