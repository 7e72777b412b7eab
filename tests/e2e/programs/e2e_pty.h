// A pseudo-terminal pair for the terminal test programs.
#pragma once
#include <fcntl.h>
#include <stdlib.h>

#include "e2e_prog.h"

// Opens a master that does not become our controlling terminal, and puts its slave's path in
// `slave_path` (a session leader that opens it takes it as its terminal).
static inline int e2e_open_pty(char* slave_path, size_t size) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  E2E_SYS(master);
  E2E_SYS(grantpt(master));
  E2E_SYS(unlockpt(master));
  snprintf(slave_path, size, "%s", ptsname(master));
  return master;
}
