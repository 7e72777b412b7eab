/* The paper's second sample (section 3), the loop that reads network input into a buffer,
 * made runnable:
 *
 *     if (tsetjmp() < 0)
 *       perror("tsetjmp");
 *     while (len = read(sockfd, buff, 1024))
 *       buff += len;
 *
 * Usage: rollback-paper_socket PORT. It connects to 127.0.0.1:PORT and reads lines
 * "LEN NAME VALUE" into `buff`; each complete line is stored in a table and acknowledged with
 * "ok N". The bug: NAME is copied with the LEN the peer sent, unchecked, so a lying LEN runs the
 * copy over the table and far beyond: SIGSEGV. The handler rolls the program back to the
 * checkpoint before the loop: the table, the buffer and `buff` are as they were, the socket is
 * still connected (its state does not live in our memory), and the loop reads on. The count of
 * records is kept in persist() memory, as the paper advises for iteration variables, and the
 * program tells the peer "recovered" so that it can go on. At the end of the input it prints
 * "records N recoveries M".
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ckpt/rollback.h>

struct record {
  char name[32];
  long value;
};

/* One block, so that the overflow runs away from `records`, which comes first. */
static struct {
  long records; /* persistent */
  char area[64 * 1024];
  struct record table[256];
} mem;

static void my_handler(int signum) {
  (void)signum;
  tlongjmp(0);
}

static void say(int fd, const char* text) {
  if (write(fd, text, strlen(text)) < 0) perror("write");
}

/* Handles the complete lines in [mem.area, end); returns where the incomplete rest starts. */
static char* process(int sockfd, char* end) {
  char* line = mem.area;
  char* nl;
  while ((nl = memchr(line, '\n', (size_t)(end - line))) != NULL) {
    *nl = '\0';
    long len = strtol(line, &line, 10);
    char* name = line + strspn(line, " ");
    char* value = strchr(name, ' ');
    if (value) {
      struct record* r = &mem.table[mem.records % 256];
      memset(r->name, 0, sizeof r->name);
      memcpy(r->name, name, (size_t)len); /* the bug: len comes from the peer */
      r->value = atol(value);
      ++mem.records;
      char ack[32];
      snprintf(ack, sizeof ack, "ok %ld\n", mem.records);
      say(sockfd, ack);
    }
    line = nl + 1;
  }
  memmove(mem.area, line, (size_t)(end - line));
  return mem.area + (end - line);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  int sockfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(argv[1]));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (sockfd < 0 || connect(sockfd, (struct sockaddr*)&addr, sizeof addr) < 0) {
    perror("connect");
    return 1;
  }
  persist((char*)&mem.records, sizeof mem.records);
  signal(SIGSEGV, my_handler);
  char* buff = mem.area;
  ssize_t len;

  if (tsetjmp() < 0) perror("tsetjmp");
  if (chkpt_status(CKPT_ROLLEDBACK)) say(sockfd, "recovered\n");
  while ((len = read(sockfd, buff, 1024)) > 0) {
    buff += len;
    buff = process(sockfd, buff);
  }

  printf("records %ld recoveries %d\n", mem.records, chkpt_status(CKPT_NUMRECOVERIES));
  return 0;
}
