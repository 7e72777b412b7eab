// A program whose executable was deleted while it runs (as after a package upgrade): it runs a
// copy of itself and removes that copy. After the restore /proc/self/exe still names the removed
// file, reads the same bytes, is the very inode its code is mapped from (no copy of it by name
// anywhere), and cannot be opened for writing, as for any running executable.
#include <fcntl.h>
#include <sys/stat.h>

#include "e2e_prog.h"

static unsigned long long checksum_of_exe(long long* size) {
  int fd = open("/proc/self/exe", O_RDONLY);
  if (fd < 0) return 0;
  unsigned long long sum = 1469598103934665603ull;
  char buf[65536];
  ssize_t n;
  *size = 0;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; ++i) sum = (sum ^ (unsigned char)buf[i]) * 1099511628211ull;
    *size += n;
  }
  close(fd);
  return sum;
}

// The inode the code of this function is mapped from.
static int code_inode(struct stat* st) {
  FILE* maps = fopen("/proc/self/maps", "r");
  if (!maps) return -1;
  unsigned long here = (unsigned long)&code_inode, start, end;
  char line[4096];
  int found = -1;
  while (fgets(line, sizeof line, maps))
    if (sscanf(line, "%lx-%lx", &start, &end) == 2 && start <= here && here < end) {
      char link[128];
      snprintf(link, sizeof link, "/proc/self/map_files/%lx-%lx", start, end);
      found = stat(link, st);
      break;
    }
  fclose(maps);
  return found;
}

static void run_a_copy(char* self) {
  const char* copy = e2e_path("deleted exe copy");
  int in = open("/proc/self/exe", O_RDONLY), out = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  E2E_SYS(in);
  E2E_SYS(out);
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0) E2E_CHECK(write(out, buf, n) == n, "copy");
  close(in);
  close(out);
  char* args[] = {(char*)copy, "copied", NULL};
  execv(copy, args);
  e2e_say("FAIL exec %s (from %s): %s", copy, self, strerror(errno));
  exit(1);
}

int main(int argc, char** argv) {
  if (argc < 2) run_a_copy(argv[0]);
  e2e_setup();
  E2E_SYS(unlink(argv[0]));
  char before[4096] = {0}, after[4096] = {0};
  E2E_SYS(readlink("/proc/self/exe", before, sizeof before - 1));
  long long size_before = 0, size_after = 0;
  unsigned long long sum_before = checksum_of_exe(&size_before);
  e2e_ready();
  e2e_wait_go();

  E2E_SYS(readlink("/proc/self/exe", after, sizeof after - 1));
  E2E_CHECK(strcmp(before, after) == 0, "exe link is '%s', was '%s'", after, before);
  unsigned long long sum_after = checksum_of_exe(&size_after);
  E2E_CHECK(size_after == size_before && sum_after == sum_before,
            "exe reads %lld bytes (sum %llx), was %lld (sum %llx)", size_after, sum_after,
            size_before, sum_before);
  struct stat exe, code;
  E2E_SYS(stat("/proc/self/exe", &exe));
  E2E_CHECK(exe.st_nlink == 0, "the exe has %lu links", (unsigned long)exe.st_nlink);
  E2E_CHECK(code_inode(&code) == 0 && code.st_ino == exe.st_ino && code.st_dev == exe.st_dev,
            "the code is not mapped from the exe's inode");
  E2E_CHECK((exe.st_mode & 0777) == 0755, "exe mode %o", exe.st_mode & 0777);
  int w = open("/proc/self/exe", O_WRONLY);
  E2E_CHECK(w < 0 && errno == ETXTBSY, "the running exe opens for writing (%s)",
            w < 0 ? strerror(errno) : "no error");
  return e2e_finish();
}
