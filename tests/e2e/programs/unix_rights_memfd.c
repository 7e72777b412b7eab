// Memfds in flight (SCM_RIGHTS), as a Wayland client or a journal writer hands over a buffer: a
// datagram socketpair holds one memfd that the sender still maps shared (its fd closed: the
// memfd lives in the mapping and in flight), sealed against shrinking, and in a second message
// one that exists only in flight. After the restore each comes out of the queue with its name,
// size, seals and contents, and the first is still the object the sender maps: a write through
// the received fd shows in the mapping.
#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "scm_rights.h"

#define PAGE 4096

static int memfd(const char* name, unsigned flags) {
  return (int)syscall(SYS_memfd_create, name, flags);
}

static int receive_one(int sock, const char* want) {
  char data[16] = "";
  int fd = -1, got = 0;
  ssize_t n = scm_recv(sock, data, sizeof data, &fd, 1, &got, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  E2E_CHECK(n == (ssize_t)strlen(want) && got == 1, "message '%.*s' with %d fds, want '%s'",
            n > 0 ? (int)n : 0, data, got, want);
  return got == 1 ? fd : -1;
}

int main(void) {
  e2e_setup();
  int sv[2];
  E2E_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
  int shared = memfd("buffer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  E2E_SYS(shared);
  E2E_SYS(ftruncate(shared, 2 * PAGE));
  char* map = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, shared, 0);
  E2E_SYS(map == MAP_FAILED ? -1 : 0);
  strcpy(map, "drawn by the sender");
  E2E_SYS(fcntl(shared, F_ADD_SEALS, F_SEAL_SHRINK));
  int alone = memfd("only in flight", MFD_CLOEXEC);
  E2E_SYS(alone);
  E2E_SYS(write(alone, "nobody maps me", 14) == 14 ? 0 : -1);
  E2E_SYS(scm_send(sv[0], "frame", &shared, 1, NULL));
  E2E_SYS(scm_send(sv[0], "note", &alone, 1, NULL));
  close(shared), close(alone);

  e2e_ready();
  e2e_wait_go();

  int frame = receive_one(sv[1], "frame");
  if (frame >= 0) {
    e2e_check_link(frame, "/memfd:buffer (deleted)");
    struct stat st;
    E2E_SYS(fstat(frame, &st));
    E2E_CHECK(st.st_size == 2 * PAGE, "the buffer's size %ld", (long)st.st_size);
    E2E_CHECK(fcntl(frame, F_GET_SEALS) == F_SEAL_SHRINK, "the buffer's seals %#x",
              fcntl(frame, F_GET_SEALS));
    char buf[32] = "";
    E2E_CHECK(pread(frame, buf, 19, 0) == 19 && strcmp(buf, "drawn by the sender") == 0,
              "the buffer reads '%s'", buf);
    E2E_SYS(pwrite(frame, "seen", 4, PAGE) == 4 ? 0 : -1);
    E2E_CHECK(memcmp(map + PAGE, "seen", 4) == 0,
              "a write through the received buffer is not in the sender's mapping");
  }
  int note = receive_one(sv[1], "note");
  if (note >= 0) {
    e2e_check_link(note, "/memfd:only in flight (deleted)");
    char buf[32] = "";
    E2E_CHECK(pread(note, buf, sizeof buf, 0) == 14 && strcmp(buf, "nobody maps me") == 0,
              "the memfd only in flight reads '%s'", buf);
  }
  return e2e_finish();
}
