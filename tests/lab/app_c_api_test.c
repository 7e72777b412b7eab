/* The ckpt_state_* API from C: register a byte range and a serializer pair, checkpoint twice,
 * corrupt the newer file, restore, and check the older state came back with a skip message. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/ckpt.h"

struct text {
  char data[64];
  size_t len;
};

static int save_text(void* user, ckpt_state_buffer* out) {
  struct text* t = user;
  return ckpt_state_buffer_append(out, t->data, t->len);
}

static int load_text(void* user, const void* data, size_t len) {
  struct text* t = user;
  if (len > sizeof t->data) return -1;
  memcpy(t->data, data, len);
  t->len = len;
  return 0;
}

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                                \
    }                                                                          \
  } while (0)

static void set_state(int* counters, struct text* t, int v) {
  for (int i = 0; i < 4; ++i) counters[i] = v + i;
  t->len = (size_t)snprintf(t->data, sizeof t->data, "state %d", v);
}

static int corrupt(const char* path) {
  FILE* f = fopen(path, "r+b");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  for (long i = 0; i < size; ++i) fputc(rand() & 0xff, f);
  return fclose(f);
}

static int run(const char* dir) {
  int counters[4];
  struct text t;
  ckpt_state_options opts;
  ckpt_state_options_init(&opts);
  opts.dir = dir;
  ckpt_state* st = ckpt_state_open(&opts);
  CHECK(st != NULL);
  CHECK(ckpt_state_add_range(st, "counters", counters, sizeof counters) == 0);
  CHECK(ckpt_state_add_fns(st, "text", save_text, load_text, &t) == 0);
  CHECK(ckpt_state_add_range(st, "counters", counters, sizeof counters) == -1 && errno == EEXIST);

  set_state(counters, &t, 1);
  CHECK(ckpt_state_checkpoint(st) == 0);
  char first[4096];
  snprintf(first, sizeof first, "%s", ckpt_state_path(st));
  set_state(counters, &t, 2);
  CHECK(ckpt_state_checkpoint(st) == 0);
  CHECK(strcmp(first, ckpt_state_path(st)) != 0);
  CHECK(corrupt(ckpt_state_path(st)) == 0);

  set_state(counters, &t, 3);
  CHECK(ckpt_state_restore(st) == 1);
  CHECK(strcmp(ckpt_state_path(st), first) == 0);
  CHECK(counters[0] == 1 && counters[3] == 4);
  CHECK(t.len == strlen("state 1") && memcmp(t.data, "state 1", t.len) == 0);
  CHECK(ckpt_state_skipped_count(st) == 1);
  printf("skipped: %s\n", ckpt_state_skipped(st, 0));
  CHECK(strstr(ckpt_state_skipped(st, 0), "checkpoint.") == ckpt_state_skipped(st, 0));
  CHECK(ckpt_state_skipped(st, 1) == NULL);

  CHECK(ckpt_state_clean(st) == 2);
  CHECK(ckpt_state_restore(st) == 0);
  ckpt_state_close(st);

  /* An unusable directory: the error names it and sets errno. */
  char bad[4200];
  snprintf(bad, sizeof bad, "%s/counters-file/sub", dir);
  char file[4200];
  snprintf(file, sizeof file, "%s/counters-file", dir);
  FILE* f = fopen(file, "w");
  CHECK(f != NULL && fclose(f) == 0);
  opts.dir = bad;
  st = ckpt_state_open(&opts);
  CHECK(st != NULL);
  CHECK(ckpt_state_checkpoint(st) == -1 && errno == ENOTDIR);
  printf("error: %s\n", ckpt_state_error(st));
  CHECK(strstr(ckpt_state_error(st), file) != NULL);
  ckpt_state_close(st);
  CHECK(unlink(file) == 0);
  return 0;
}

int main(void) {
  char dir[] = "/tmp/ckpt-c-api-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  int rc = run(dir);
  if (rc == 0 && rmdir(dir) != 0) {
    perror("rmdir");
    rc = 1;
  }
  if (rc == 0) printf("PASS\n");
  return rc;
}
