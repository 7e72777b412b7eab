// A process that locked itself into a directory with chroot(2): after restore it is still inside
// (its "/" is the jail, where its files are; the real root's are out of reach) and in the same
// working directory within it, and a file of the jail it holds open ("/marker" to it, a longer
// path to ckpt) is that file again, at its offset.
#include <fcntl.h>
#include <sys/stat.h>

#include "e2e_prog.h"

static const char kMarker[] = "inside the jail\n";

static int read_marker(const char* path, char* buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = 0;
  return 0;
}

int main(void) {
  e2e_setup();
  E2E_SYS(mkdir("jail", 0755));
  E2E_SYS(mkdir("jail/home", 0755));
  int fd = open("jail/marker", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  E2E_SYS(fd);
  E2E_SYS(write(fd, kMarker, sizeof kMarker - 1));
  close(fd);
  E2E_SYS(chroot("jail"));
  E2E_SYS(chdir("/home"));
  int held = open("/marker", O_RDONLY | O_CLOEXEC);
  E2E_SYS(held);
  E2E_SYS(lseek(held, 7, SEEK_SET));
  e2e_ready();
  e2e_wait_go();
  char buf[64] = "";
  E2E_CHECK(read_marker("/marker", buf, sizeof buf) == 0 && strcmp(buf, kMarker) == 0,
            "/marker is not the jail's: '%s'", buf);
  E2E_CHECK(read_marker("../marker", buf, sizeof buf) == 0, "cwd is not /home in the jail");
  E2E_CHECK(access("/usr/bin", F_OK) != 0, "the real root's /usr/bin is visible");
  char cwd[256] = "";
  E2E_CHECK(getcwd(cwd, sizeof cwd) && strcmp(cwd, "/home") == 0, "cwd is '%s'", cwd);
  struct stat by_fd, by_path;
  E2E_SYS(fstat(held, &by_fd));
  E2E_SYS(stat("/marker", &by_path));
  E2E_CHECK(by_fd.st_ino == by_path.st_ino, "the held file is not the jail's /marker");
  char rest[32] = "";
  E2E_CHECK(read(held, rest, sizeof rest - 1) == 9 && strcmp(rest, "the jail\n") == 0,
            "the held file reads '%s' from its offset", rest);
  return e2e_finish();
}
