// The main thread sits in pause(); after restore it must still be there and return only when
// the runner's SIGUSR2 arrives.
#include "e2e_prog.h"

int main(void) {
  e2e_setup();
  e2e_ready();
  int r = pause();
  int err = errno;
  E2E_CHECK(r == -1 && err == EINTR, "pause returned %d (%s)", r, strerror(err));
  E2E_CHECK(e2e_go, "pause returned before the runner's signal");
  return e2e_finish();
}
