// inotify and fanotify instances keep their watches across dump and restore:
//   inotify: watch numbers with a gap (watch 1 removed), a one-shot watch, a watch on a symbolic
//            link itself (IN_DONT_FOLLOW), and a blocking instance with a thread waiting in
//            read(), which must get the next event without EINTR;
//   fanotify: an inode mark, an inode mark with an ignore mask that survives modification, a
//            mount mark and a filesystem mark.
// After restore fdinfo shows the same marks, each watch reports the events it should under its
// old number, and nothing is queued that the program did not cause (no IN_IGNORED from the
// restore's own bookkeeping).
#include <fcntl.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "e2e_prog.h"

enum { kMaxLines = 32 };
static char dir[512], file[512], other[512], link_path[512], created[512];
static int blocking;
static volatile int blocked_result = -2;  // what the waiting thread's read() got
static char blocked_name[64];

struct lines {
  int n;
  char text[kMaxLines][256];
};

static int cmp_lines(const void* a, const void* b) {
  return strcmp((const char*)a, (const char*)b);
}

// The watch and mark lines of an fd's fdinfo, sorted (their order is the kernel's list order).
static void marks_of(int fd, struct lines* out) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE* f = fopen(path, "r");
  out->n = 0;
  if (!f) return;
  char line[256];
  while (fgets(line, sizeof line, f) && out->n < kMaxLines)
    if (strncmp(line, "inotify", 7) == 0 || strncmp(line, "fanotify", 8) == 0)
      snprintf(out->text[out->n++], sizeof out->text[0], "%s", line);
  fclose(f);
  qsort(out->text, (size_t)out->n, sizeof out->text[0], cmp_lines);
}

static void check_same_marks(int fd, const struct lines* before, const char* name) {
  struct lines after;
  marks_of(fd, &after);
  E2E_CHECK(after.n == before->n, "%s has %d marks after restore, had %d", name, after.n,
            before->n);
  for (int i = 0; i < after.n && i < before->n; ++i)
    E2E_CHECK(strcmp(after.text[i], before->text[i]) == 0, "%s mark was %s  is %s", name,
              before->text[i], after.text[i]);
}

static void* wait_in_read(void* arg) {
  (void)arg;
  char buf[4096] __attribute__((aligned(8)));
  ssize_t n = read(blocking, buf, sizeof buf);
  if (n < 0) {
    blocked_result = -errno;
    return NULL;
  }
  struct inotify_event* ev = (struct inotify_event*)buf;
  snprintf(blocked_name, sizeof blocked_name, "%.63s", ev->len ? ev->name : "");
  blocked_result = (int)ev->mask;
  return NULL;
}

struct seen {
  int wd;
  uint32_t mask;
  char name[64];
};

static int read_inotify(int fd, struct seen* out, int max) {
  char buf[4096] __attribute__((aligned(8)));
  int count = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    for (char* p = buf; p < buf + n && count < max;) {
      struct inotify_event* ev = (struct inotify_event*)p;
      out[count].wd = ev->wd;
      out[count].mask = ev->mask;
      snprintf(out[count].name, sizeof out[0].name, "%.63s", ev->len ? ev->name : "");
      ++count;
      p += sizeof *ev + ev->len;
    }
  return count;
}

static int has(const struct seen* s, int n, int wd, uint32_t mask, const char* name) {
  for (int i = 0; i < n; ++i)
    if (s[i].wd == wd && (s[i].mask & mask) && strcmp(s[i].name, name) == 0) return 1;
  return 0;
}

static void write_to(const char* path) {
  int fd = open(path, O_WRONLY | O_APPEND);
  E2E_SYS(fd);
  E2E_SYS(write(fd, "x", 1));
  close(fd);
}

static void make_files(void) {
  const char* top = getenv("E2E_DIR");
  snprintf(dir, sizeof dir, "%s/watched", top);
  snprintf(file, sizeof file, "%s/watched/file", top);
  snprintf(created, sizeof created, "%s/watched/new", top);
  snprintf(other, sizeof other, "%s/other", top);
  snprintf(link_path, sizeof link_path, "%s/link", top);
  E2E_SYS(mkdir(dir, 0755));
  E2E_SYS(close(open(file, O_CREAT | O_WRONLY, 0644)));
  E2E_SYS(close(open(other, O_CREAT | O_WRONLY, 0644)));
  E2E_SYS(symlink(other, link_path));
}

int main(void) {
  e2e_setup();
  make_files();

  int in = inotify_init1(IN_NONBLOCK);
  E2E_SYS(in);
  int gone = inotify_add_watch(in, dir, IN_DELETE);
  int w_file = inotify_add_watch(in, file, IN_MODIFY);
  E2E_SYS(inotify_rm_watch(in, gone));
  int w_dir = inotify_add_watch(in, dir, IN_CREATE | IN_MOVED_TO);
  int w_once = inotify_add_watch(in, other, IN_ATTRIB | IN_ONESHOT);
  int w_link = inotify_add_watch(in, link_path, IN_ATTRIB | IN_DONT_FOLLOW);
  E2E_SYS(w_file);
  E2E_SYS(w_dir);
  E2E_SYS(w_once);
  E2E_SYS(w_link);
  struct seen ev[32];
  read_inotify(in, ev, 32);  // the removal's IN_IGNORED

  blocking = inotify_init1(0);
  E2E_SYS(blocking);
  E2E_SYS(inotify_add_watch(blocking, dir, IN_DELETE));
  pthread_t waiter;
  e2e_thread(&waiter, wait_in_read, NULL);

  int fan = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
  E2E_SYS(fan);
  E2E_SYS(fanotify_mark(fan, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, file));
  E2E_SYS(fanotify_mark(fan, FAN_MARK_ADD, FAN_CLOSE_WRITE, AT_FDCWD, other));
  E2E_SYS(fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
                        FAN_MODIFY, AT_FDCWD, other));
  // Executions from /dev/shm: events nothing else in the test run causes.
  E2E_SYS(fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_EXEC, AT_FDCWD, "/dev/shm"));
  E2E_SYS(
      fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC, AT_FDCWD, "/dev/shm"));

  struct lines in_marks, blocking_marks, fan_marks;
  marks_of(in, &in_marks);
  marks_of(blocking, &blocking_marks);
  marks_of(fan, &fan_marks);
  e2e_ready();
  e2e_wait_go();

  check_same_marks(in, &in_marks, "inotify");
  check_same_marks(blocking, &blocking_marks, "blocking inotify");
  check_same_marks(fan, &fan_marks, "fanotify");
  int n = read_inotify(in, ev, 32);
  E2E_CHECK(n == 0, "inotify had %d events queued after restore (first: watch %d mask %#x)", n,
            n ? ev[0].wd : 0, n ? ev[0].mask : 0);

  write_to(file);
  write_to(other);
  E2E_SYS(close(open(created, O_CREAT | O_WRONLY, 0644)));
  E2E_SYS(chmod(other, 0600));
  struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
  E2E_SYS(utimensat(AT_FDCWD, link_path, times, AT_SYMLINK_NOFOLLOW));
  n = read_inotify(in, ev, 32);
  E2E_CHECK(has(ev, n, w_file, IN_MODIFY, ""), "no IN_MODIFY on watch %d (the file)", w_file);
  E2E_CHECK(has(ev, n, w_dir, IN_CREATE, "new"), "no IN_CREATE \"new\" on watch %d", w_dir);
  E2E_CHECK(has(ev, n, w_once, IN_ATTRIB, ""), "no IN_ATTRIB on one-shot watch %d", w_once);
  E2E_CHECK(has(ev, n, w_once, IN_IGNORED, ""), "one-shot watch %d was not removed after firing",
            w_once);
  E2E_CHECK(has(ev, n, w_link, IN_ATTRIB, ""), "no IN_ATTRIB on watch %d (the link itself)",
            w_link);
  for (int i = 0; i < n; ++i)
    E2E_CHECK(ev[i].wd == w_file || ev[i].wd == w_dir || ev[i].wd == w_once || ev[i].wd == w_link,
              "event %#x on watch %d, which the program did not add", ev[i].mask, ev[i].wd);
  int w_new = inotify_add_watch(in, created, IN_DELETE_SELF);
  E2E_CHECK(w_new > w_link, "a watch added after restore is number %d, want above %d", w_new,
            w_link);

  struct stat st_file, st_other;
  E2E_SYS(stat(file, &st_file));
  E2E_SYS(stat(other, &st_other));
  // Both marks are on different inodes; read once, then tell them apart by inode.
  char buf[8192] __attribute__((aligned(8)));
  uint64_t file_mask = 0, other_mask = 0;
  ssize_t got;
  while ((got = read(fan, buf, sizeof buf)) > 0) {
    struct fanotify_event_metadata* m = (struct fanotify_event_metadata*)buf;
    for (; FAN_EVENT_OK(m, got); m = FAN_EVENT_NEXT(m, got)) {
      struct stat st;
      if (m->fd >= 0 && fstat(m->fd, &st) == 0) {
        if (st.st_ino == st_file.st_ino) file_mask |= m->mask;
        if (st.st_ino == st_other.st_ino) other_mask |= m->mask;
      }
      if (m->fd >= 0) close(m->fd);
    }
  }
  E2E_CHECK((file_mask & (FAN_MODIFY | FAN_CLOSE_WRITE)) == (FAN_MODIFY | FAN_CLOSE_WRITE),
            "fanotify reported %#llx for the file, want modify and close-write",
            (unsigned long long)file_mask);
  E2E_CHECK(other_mask == FAN_CLOSE_WRITE,
            "fanotify reported %#llx for the other file, want only close-write (modify ignored)",
            (unsigned long long)other_mask);

  E2E_SYS(unlink(created));
  pthread_join(waiter, NULL);
  E2E_CHECK(blocked_result >= 0 && (blocked_result & IN_DELETE),
            "the thread waiting in read() got %d (%s), want IN_DELETE", blocked_result,
            blocked_result < 0 ? strerror(-blocked_result) : "an event");
  E2E_CHECK(strcmp(blocked_name, "new") == 0, "the waiting thread's event names \"%s\"",
            blocked_name);
  return e2e_finish();
}
