// Directories removed while in use (issue 11, point 7): the current directory, one open with
// open(O_DIRECTORY), one open with opendir(), and one whose parent was removed after it. After
// the restore each is again a removed directory (st_nlink 0, "<path> (deleted)" in /proc) with
// its mode, getcwd() answers as it did, and a lookup in any of them fails with ENOENT.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "e2e_prog.h"

static void check_removed(int fd, const char* path, mode_t mode, const char* name) {
  struct stat st;
  E2E_SYS(fstat(fd, &st));
  E2E_CHECK(S_ISDIR(st.st_mode), "%s is not a directory", name);
  E2E_CHECK(st.st_nlink == 0, "%s has %lu links, want 0", name, (unsigned long)st.st_nlink);
  E2E_CHECK((st.st_mode & 07777) == mode, "%s mode %o, want %o", name, st.st_mode & 07777, mode);
  char proc[64], link[4200] = {0}, want[4200];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  snprintf(want, sizeof want, "%s (deleted)", path);
  E2E_CHECK(readlink(proc, link, sizeof link - 1) > 0 && strcmp(link, want) == 0,
            "%s links to '%.200s', want '%.200s'", name, link, want);
  errno = 0;
  E2E_CHECK(openat(fd, "entry", O_RDONLY) < 0 && errno == ENOENT, "%s: lookup gave %s", name,
            strerror(errno));
  errno = 0;
  E2E_CHECK(openat(fd, "new", O_CREAT | O_WRONLY, 0600) < 0 && errno == ENOENT,
            "%s: create gave %s", name, strerror(errno));
}

static int entries(DIR* d) {
  int n = 0;
  rewinddir(d);
  while (readdir(d)) ++n;
  return n;
}

int main(void) {
  e2e_setup();
  char cwd_path[4096], fd_path[4096], dir_path[4096], parent_path[4096], child_path[4200];
  snprintf(cwd_path, sizeof cwd_path, "%s", e2e_path("work dir"));
  snprintf(fd_path, sizeof fd_path, "%s", e2e_path("opened"));
  snprintf(dir_path, sizeof dir_path, "%s", e2e_path("listed"));
  snprintf(parent_path, sizeof parent_path, "%s", e2e_path("parent"));
  snprintf(child_path, sizeof child_path, "%s/child", parent_path);
  E2E_SYS(mkdir(cwd_path, 0751));
  E2E_SYS(mkdir(fd_path, 0705));
  E2E_SYS(mkdir(dir_path, 0700));
  E2E_SYS(mkdir(parent_path, 0755));
  E2E_SYS(mkdir(child_path, 0710));
  E2E_SYS(chdir(cwd_path));
  int fd = open(fd_path, O_RDONLY | O_DIRECTORY);
  E2E_SYS(fd);
  DIR* listed = opendir(dir_path);
  E2E_CHECK(listed != NULL, "opendir: %s", strerror(errno));
  if (!listed) return e2e_finish();
  int child = open(child_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  E2E_SYS(child);
  E2E_SYS(rmdir(cwd_path));
  E2E_SYS(rmdir(fd_path));
  E2E_SYS(rmdir(dir_path));
  E2E_SYS(rmdir(child_path));
  E2E_SYS(rmdir(parent_path));
  char before[4200];
  errno = 0;
  char* got = getcwd(before, sizeof before);
  int before_errno = got ? 0 : errno;
  int before_entries = entries(listed);
  e2e_ready();
  e2e_wait_go();

  char after[4200];
  errno = 0;
  got = getcwd(after, sizeof after);
  int after_errno = got ? 0 : errno;
  E2E_CHECK(after_errno == before_errno, "getcwd: errno %d, was %d", after_errno, before_errno);
  if (before_errno == 0 && after_errno == 0)
    E2E_CHECK(strcmp(before, after) == 0, "getcwd: '%.200s', was '%.200s'", after, before);
  int here = open(".", O_RDONLY | O_DIRECTORY);
  E2E_SYS(here);
  check_removed(here, cwd_path, 0751, "cwd");
  errno = 0;
  E2E_CHECK(open("entry", O_RDONLY) < 0 && errno == ENOENT, "cwd: relative open gave %s",
            strerror(errno));
  check_removed(fd, fd_path, 0705, "fd");
  check_removed(dirfd(listed), dir_path, 0700, "opendir");
  check_removed(child, child_path, 0710, "child of a removed parent");
  E2E_CHECK(entries(listed) == before_entries, "opendir lists %d entries, had %d", entries(listed),
            before_entries);
  E2E_SYS(fchdir(fd));
  check_removed(here, cwd_path, 0751, "old cwd");
  struct stat st;
  E2E_CHECK(stat(cwd_path, &st) < 0 && stat(parent_path, &st) < 0,
            "a removed directory is back in its parent");
  return e2e_finish();
}
