// Unmodified Debian programs dumped mid-work and restored: their output must carry on exactly.
// Programs whose stdin/stdout are pipes to the test are dumped and restored with --shell-job;
// `ckpt restore --shell-job` then runs with the stdio the program is to have.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "counter_output.hpp"
#include "e2e_util.hpp"

namespace e2e {
namespace {

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) throw std::runtime_error("pipe2");
    r = p[0];
    w = p[1];
  }
  ~Pipe() {
    close_r();
    close_w();
  }
  void close_r() {
    if (r >= 0) ::close(r);
    r = -1;
  }
  void close_w() {
    if (w >= 0) ::close(w);
    w = -1;
  }
};

class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  // The next line without its newline; nullopt on EOF or timeout.
  std::optional<std::string> next(std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n <= 0) return std::nullopt;
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buf_;
};

class DebianTest : public ::testing::Test {
 protected:
  void SetUp() override {
    become_subreaper();
    devnull_ = open_or_die("/dev/null", O_RDWR);
    err_ = open_or_die(dir_ / "stderr", O_WRONLY | O_CREAT | O_TRUNC);
  }
  void TearDown() override {
    std::vector<pid_t> tree = pid_ > 0 ? descendants(pid_) : std::vector<pid_t>{};
    others_.push_back(pid_);
    others_.push_back(restorer_);
    for (pid_t p : others_)
      if (p > 0) {
        ::kill(p, SIGKILL);
        wait_child(p, 5s);
      }
    for (pid_t p : tree) ::kill(p, SIGKILL);
    EXPECT_TRUE(reap_all(tree, {}));
    ::close(devnull_);
    ::close(err_);
  }

  void start(std::vector<std::string> argv, int in, int out) {
    SpawnSpec spec;
    spec.argv = std::move(argv);
    spec.fds[0] = in;
    spec.fds[1] = out;
    spec.fds[2] = err_;
    spec.cwd = dir_.path();
    pid_ = spawn(spec);
  }

  ::testing::AssertionResult dump(bool shell_job) {
    std::vector<std::string> args = {"dump", "-t", std::to_string(pid_), "-D",
                                     (dir_ / "store").string()};
    if (shell_job) args.push_back("--shell-job");
    auto tree = descendants(pid_);
    auto r = run_ckpt(args);
    if (r.exit_code() != 0)
      return ::testing::AssertionFailure() << "dump: " << r.describe() << stderr_text();
    auto st = wait_child(pid_, 5s);
    if (!st || !WIFSIGNALED(*st))
      return ::testing::AssertionFailure() << "the dumped process did not die";
    // Its children die with it and come to us: their PIDs must be free for the restore.
    return reap_all(tree, others_);
  }

  // `ckpt restore --shell-job --pidfile F` with the given stdio; it stays our child and waits for
  // the restored process.
  // The program's pipes to this test lead outside the dumped processes: like CRIU, restore makes
  // them anew unless it is handed the open file to use (--inherit-fd fd[N]:pipe:[INO]).
  static void inherit_pipe(std::vector<std::string>& argv, int restorer_fd, int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return;
    argv.push_back("--inherit-fd");
    argv.push_back("fd[" + std::to_string(restorer_fd) + "]:pipe:[" + std::to_string(st.st_ino) +
                   "]");
  }

  ::testing::AssertionResult restore_shell_job(int in, int out) {
    SpawnSpec spec;
    spec.argv = {ckpt_path(),
                 "restore",
                 "-D",
                 (dir_ / "store").string(),
                 "--shell-job",
                 "--pidfile",
                 (dir_ / "pid").string()};
    inherit_pipe(spec.argv, 0, in);
    inherit_pipe(spec.argv, 1, out);
    spec.fds[0] = in;
    spec.fds[1] = out;
    spec.fds[2] = err_;
    restorer_ = spawn(spec);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::string text = read_text(dir_ / "pid");
      if (!text.empty() && text.back() == '\n') {
        if (std::stoi(text) != pid_)
          return ::testing::AssertionFailure() << "restored as pid " << text;
        return ::testing::AssertionSuccess();
      }
      int status;
      if (::waitpid(restorer_, &status, WNOHANG) == restorer_) {
        restorer_ = -1;
        return ::testing::AssertionFailure()
               << "ckpt restore ended with " << describe_status(status) << stderr_text();
      }
      sleep_for(5ms);
    }
    return ::testing::AssertionFailure() << "no pidfile from ckpt restore" << stderr_text();
  }

  ::testing::AssertionResult restore_detached() {
    auto r = run_ckpt({"restore", "-D", (dir_ / "store").string(), "--detach"});
    if (r.exit_code() != 0) return ::testing::AssertionFailure() << "restore: " << r.describe();
    if (std::atoi(r.out.c_str()) != pid_)
      return ::testing::AssertionFailure() << "restored as " << r.out;
    return ::testing::AssertionSuccess();
  }

  std::string stderr_text() const { return "\nstderr file:\n" + read_text(dir_ / "stderr"); }

  // Reads lines `prefix`next, `prefix`next+1... up to `last`; `next` follows.
  void expect_count(LineReader& lines, const std::string& prefix, long& next, long last) {
    for (; next <= last; ++next) {
      auto l = lines.next();
      ASSERT_TRUE(l) << "no line after " << next - 1 << stderr_text();
      ASSERT_EQ(*l, prefix + std::to_string(next)) << "the count broke" << stderr_text();
    }
  }

  // A program printing 0, 1, 2... on stdout: dumped mid-count, restored, must go on exactly.
  void check_counting(std::vector<std::string> argv) {
    Pipe out;
    start(std::move(argv), devnull_, out.w);
    LineReader lines(out.r);
    long next = 0;
    ASSERT_NO_FATAL_FAILURE(expect_count(lines, "", next, 30));
    ASSERT_TRUE(dump(true));
    ASSERT_TRUE(restore_shell_job(devnull_, out.w));
    ASSERT_NO_FATAL_FAILURE(expect_count(lines, "", next, next + 100));
  }

  TempDir dir_;
  int devnull_ = -1, err_ = -1;
  pid_t pid_ = -1, restorer_ = -1;
  std::vector<pid_t> others_;  // children of the test that are not dumped
};

TEST_F(DebianTest, Python3Loop) {
  check_counting({"/usr/bin/python3", "-c",
                  "import time\ni = 0\nwhile True:\n    print(i, flush=True)\n    i += 1\n    "
                  "time.sleep(0.01)\n"});
}

// A JVM (OpenJDK 17: ~20 threads, the G1 collector, the JIT, its perf data file mapped shared,
// safepoints by signal-free polling pages): each step hands four tasks to a thread pool and
// checks their sum, and keeps garbage coming; a full collection runs every 25 steps, before
// and after the restore. The source is compiled as it starts (java's source launcher).
TEST_F(DebianTest, JavaThreadPoolCountsOnAcrossDumpAndRestore) {
  std::ofstream(dir_ / "Counter.java") << R"(
import java.util.*;
import java.util.concurrent.*;
public class Counter {
  public static void main(String[] args) throws Exception {
    ExecutorService pool = Executors.newFixedThreadPool(4);
    List<long[]> kept = new ArrayList<>();
    for (long i = 0; ; i++) {
      final long n = i;
      List<Future<Long>> parts = new ArrayList<>();
      for (int k = 1; k <= 4; k++) {
        final int f = k;
        parts.add(pool.submit(() -> { long[] junk = new long[4096]; junk[7] = n * f; return junk[7]; }));
      }
      long sum = 0;
      for (Future<Long> part : parts) sum += part.get();
      if (sum != n * 10) throw new IllegalStateException("sum " + sum + " at " + n);
      kept.add(new long[2048]);
      if (kept.size() > 400) kept.subList(0, 200).clear();
      if (n % 25 == 0) System.gc();
      System.out.println(n);
      Thread.sleep(10);
    }
  }
}
)";
  check_counting({"/usr/bin/java", "-Xmx128m", "Counter.java"});
}

// Python installs its handlers with SA_ONSTACK but has no alternate stack: neither may the
// restored process (the puppet inherits ckpt's own, which a sanitizer build of ckpt has), or
// the first tick after the restore kills it.
TEST_F(DebianTest, Python3CountsInATimerSignalHandler) {
  check_counting({"/usr/bin/python3", "-c",
                  "import signal\ni = 0\ndef tick(*_):\n    global i\n    print(i, flush=True)\n"
                  "    i += 1\nsignal.signal(signal.SIGALRM, tick)\n"
                  "signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)\nwhile True:\n"
                  "    signal.pause()\n"});
}

// asyncio's PidfdChildWatcher waits for each /bin/sleep child through a pidfd in its epoll set:
// dumped while it waits (the sleep takes most of each step), the restored loop must see the
// restored child end through the pidfd it watches and count on.
TEST_F(DebianTest, Python3AsyncioWaitsForItsChildrenThroughPidfds) {
  check_counting({"/usr/bin/python3", "-c",
                  "import asyncio\nasync def main():\n    i = 0\n    while True:\n"
                  "        print(i, flush=True)\n        i += 1\n"
                  "        p = await asyncio.create_subprocess_exec('/bin/sleep', '0.02')\n"
                  "        if await p.wait() != 0:\n            raise SystemExit('sleep failed')\n"
                  "asyncio.set_child_watcher(asyncio.PidfdChildWatcher())\n"
                  "asyncio.run(main())\n"});
}

// The count lives in a memfd: written through a shared mapping, printed as read through the
// descriptor. After the restore both must still be one object, or the count stalls.
TEST_F(DebianTest, Python3CountsInAMemfdThroughItsMappingAndItsDescriptor) {
  check_counting({"/usr/bin/python3", "-c",
                  "import mmap, os, struct, time\nfd = os.memfd_create('counter')\n"
                  "os.ftruncate(fd, 4096)\nm = mmap.mmap(fd, 4096)\nwhile True:\n"
                  "    print(struct.unpack('q', os.pread(fd, 8, 0))[0], flush=True)\n"
                  "    struct.pack_into('q', m, 0, struct.unpack_from('q', m, 0)[0] + 1)\n"
                  "    time.sleep(0.01)\n"});
}

TEST_F(DebianTest, PerlLoop) {
  check_counting(
      {"/usr/bin/perl", "-e",
       "$| = 1; for ($i = 0;; $i++) { print \"$i\\n\"; select(undef, undef, undef, 0.01); }"});
}

TEST_F(DebianTest, BashLoop) {
  // Builtins only: a single process, dumped wherever it is in its busy loop.
  check_counting(
      {"/bin/bash", "-c",
       "i=0; while :; do echo $i; i=$((i+1)); for ((j=0;j<2000;j++)); do :; done; done"});
}

TEST_F(DebianTest, BashLoopWithExternalSleep) {
  // A /bin/sleep child every iteration: bash is mostly blocked in wait4 on it when dumped, and
  // the child is dumped and restored with it (or is just being forked or exec'd).
  check_counting(
      {"/bin/bash", "-c", "i=0; while :; do echo $i; i=$((i+1)); /bin/sleep 0.02; done"});
}

TEST_F(DebianTest, BashCommandSubstitutionThroughAPipe) {
  // The counter goes through $(...): a subshell sleeps (usually when dumped), then prints it into
  // a pipe to bash. With --shell-job the subshell's stdout must stay that pipe (only the streams
  // it shares with bash are the terminal's), or the number would go to the terminal and bash
  // would count on from nothing.
  check_counting({"/bin/bash", "-c",
                  "i=0; while :; do echo $i; i=$(( $(/bin/sleep 0.03; echo $i) + 1 )); done"});
}

TEST_F(DebianTest, Sqlite3InMemoryDatabaseThroughPipes) {
  Pipe in, out;
  start({"/usr/bin/sqlite3", ":memory:"}, in.r, out.w);
  LineReader lines(out.r);
  std::string setup =
      "CREATE TABLE t(x INTEGER);\n"
      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000) "
      "INSERT INTO t SELECT i FROM c;\n"
      "SELECT count(*), sum(x) FROM t;\n";
  ASSERT_EQ(::write(in.w, setup.data(), setup.size()), static_cast<ssize_t>(setup.size()));
  EXPECT_EQ(lines.next(), "1000|500500") << stderr_text();
  sleep_for(100ms);
  ASSERT_TRUE(dump(true));
  ASSERT_TRUE(restore_shell_job(in.r, out.w));
  std::string more = "INSERT INTO t VALUES (5000);\nSELECT count(*), sum(x) FROM t;\n";
  ASSERT_EQ(::write(in.w, more.data(), more.size()), static_cast<ssize_t>(more.size()));
  EXPECT_EQ(lines.next(), "1001|505500") << stderr_text();
  in.close_w();
  auto st = wait_child(restorer_, 10s);
  restorer_ = -1;
  pid_ = -1;
  ASSERT_TRUE(st);
  EXPECT_EQ(describe_status(*st), "exit 0")
      << "sqlite3's exit status through ckpt restore" << stderr_text();
}

// sqlite3 inside `BEGIN EXCLUSIVE` holds POSIX locks on its database file (issue 12): after
// restore a second sqlite3 must still find the database locked, and see the transaction's row
// once the restored one commits.
TEST_F(DebianTest, Sqlite3HoldsADatabaseLockAcrossRestore) {
  std::string db = (dir_ / "locked.db").string();
  auto query = [&](const std::string& sql) { return run_command({"/usr/bin/sqlite3", db, sql}); };
  auto made = query("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1);");
  ASSERT_EQ(made.exit_code(), 0) << made.describe();
  Pipe in, out;
  start({"/usr/bin/sqlite3", db}, in.r, out.w);
  LineReader lines(out.r);
  std::string begin = "BEGIN EXCLUSIVE;\nINSERT INTO t VALUES (2);\nSELECT count(*) FROM t;\n";
  ASSERT_EQ(::write(in.w, begin.data(), begin.size()), static_cast<ssize_t>(begin.size()));
  ASSERT_EQ(lines.next(), "2") << stderr_text();
  auto before = query("SELECT count(*) FROM t;");
  ASSERT_NE(before.err.find("database is locked"), std::string::npos) << before.describe();

  ASSERT_TRUE(dump(true));
  ASSERT_TRUE(restore_shell_job(in.r, out.w));
  auto locked = query("SELECT count(*) FROM t;");
  EXPECT_NE(locked.exit_code(), 0) << locked.describe();
  EXPECT_NE(locked.err.find("database is locked"), std::string::npos) << locked.describe();

  std::string commit = "COMMIT;\nSELECT count(*) FROM t;\n";
  ASSERT_EQ(::write(in.w, commit.data(), commit.size()), static_cast<ssize_t>(commit.size()));
  EXPECT_EQ(lines.next(), "2") << stderr_text();
  auto after = query("SELECT count(*) FROM t;");
  EXPECT_EQ(after.exit_code(), 0) << after.describe();
  EXPECT_EQ(after.out, "2\n") << after.describe();
  in.close_w();
  auto st = wait_child(restorer_, 10s);
  restorer_ = -1;
  pid_ = -1;
  ASSERT_TRUE(st);
  EXPECT_EQ(describe_status(*st), "exit 0") << stderr_text();
}

TEST_F(DebianTest, CatFromPipe) {
  Pipe in, out;
  start({"/usr/bin/cat"}, in.r, out.w);
  LineReader lines(out.r);
  ASSERT_EQ(::write(in.w, "before\n", 7), 7);
  EXPECT_EQ(lines.next(), "before");
  sleep_for(50ms);
  ASSERT_TRUE(dump(true));
  ASSERT_TRUE(restore_shell_job(in.r, out.w));
  ASSERT_EQ(::write(in.w, "after\n", 6), 6);
  EXPECT_EQ(lines.next(), "after") << stderr_text();
  in.close_w();
  auto st = wait_child(restorer_, 10s);
  restorer_ = -1;
  pid_ = -1;
  ASSERT_TRUE(st);
  EXPECT_EQ(describe_status(*st), "exit 0") << stderr_text();
}

// The middle of a shell pipeline (issue 11): `producer | sed -u | test`, only sed dumped, while
// lines flow as fast as the pipes take them, so both pipes are full when it is killed. Both lead
// outside the dumped process and are handed back to the restore: every line must arrive once, in
// order.
TEST_F(DebianTest, MiddleOfAPipelineGoesOnWithNoLineLostOrRepeated) {
  Pipe in, out;
  SpawnSpec producer;
  producer.argv = {"/usr/bin/python3", "-c",
                   "import sys\ni = 0\nwhile True:\n    i += 1\n    sys.stdout.write(f'{i}\\n')\n"
                   "    if i % 50 == 0: sys.stdout.flush()\n"};
  producer.fds[0] = devnull_;
  producer.fds[1] = in.w;
  producer.fds[2] = err_;
  pid_t writer = spawn(producer);
  others_.push_back(writer);
  in.close_w();
  start({"/usr/bin/sed", "-u", "s/^/n=/"}, in.r, out.w);
  LineReader lines(out.r);
  long next = 1;
  ASSERT_NO_FATAL_FAILURE(expect_count(lines, "n=", next, 2000));
  sleep_for(100ms);  // the pipes fill up meanwhile
  ASSERT_TRUE(dump(true));
  ASSERT_TRUE(restore_shell_job(in.r, out.w));
  ASSERT_NO_FATAL_FAILURE(expect_count(lines, "n=", next, next + 50000));
}

// GNU make running jobs in parallel (issue 11): `make -j3` with two recursive makes that share its
// jobserver pipe, dumped with all its jobs mid-work and restored. The tokens in the pipe must
// come back exactly: one lost and make waits or complains at exit, one too many and more than
// three jobs run at once. Every job's output must be whole and the build must succeed.
TEST_F(DebianTest, ParallelMakeFinishesWithItsJobserverIntact) {
  std::ofstream(dir_ / "job.sh") << "echo \"start $1 $(date +%s%N)\" >> ../times\n"
                                    "for i in 1 2 3 4 5 6; do echo \"$1 $i\"; sleep 0.1; done\n"
                                    "echo \"end $1 $(date +%s%N)\" >> ../times\n";
  std::string sub =
      "JOBS := a b c d e\nall: $(JOBS)\n"
      "$(JOBS):\n\t@sh ../job.sh $(notdir $(CURDIR))-$@ > $@.tmp && mv $@.tmp $@\n";
  for (const char* d : {"one", "two"}) {
    fs::create_directory(dir_ / d);
    std::ofstream(dir_ / d / "Makefile") << sub;
  }
  std::ofstream(dir_ / "Makefile") << "all: one two\n\t@cat one/? two/? > all.txt\n"
                                      ".PHONY: one two\none two:\n\t@$(MAKE) -s -C $@\n";
  int out = open_or_die(dir_ / "stdout", O_WRONLY | O_CREAT | O_TRUNC);
  start({"/bin/sh", "-c", "make -s -j3; echo $? > status"}, devnull_, out);
  ::close(out);
  auto started = [&] { return read_text(dir_ / "times").size() > 0; };
  for (int i = 0; i < 500 && !started(); ++i) sleep_for(10ms);
  ASSERT_TRUE(started()) << "no job started" << stderr_text();
  sleep_for(250ms);
  ASSERT_TRUE(dump(false));
  ASSERT_TRUE(restore_detached());
  for (int i = 0; i < 2000 && read_text(dir_ / "status").empty(); ++i) sleep_for(10ms);
  ASSERT_EQ(read_text(dir_ / "status"), "0\n") << "make failed" << stderr_text();
  EXPECT_EQ(read_text(dir_ / "stderr"), "") << "make complained";
  std::string want;
  for (const char* d : {"one", "two"})
    for (char t = 'a'; t <= 'e'; ++t)
      for (int i = 1; i <= 6; ++i)
        want += std::string(d) + "-" + t + " " + std::to_string(i) + "\n";
  EXPECT_EQ(read_text(dir_ / "all.txt"), want);
  // At most three jobs at any moment, from the start and end times each job wrote.
  std::istringstream times(read_text(dir_ / "times"));
  std::vector<std::pair<long long, int>> events;
  std::string what, job;
  long long at;
  while (times >> what >> job >> at) events.push_back({at, what == "start" ? 1 : -1});
  EXPECT_EQ(events.size(), 20u);
  std::sort(events.begin(), events.end());
  int running = 0, most = 0;
  for (auto& [t, d] : events) most = std::max(most, running += d);
  EXPECT_LE(most, 3) << "more jobs ran at once than make -j3 allows";
  EXPECT_GE(most, 2) << "the jobs did not run in parallel";
}

// `tail -F` follows a log with inotify watches on the file and on its directory (issue 11): after
// restore an appended line must show at once (tail does not poll while it has inotify), and a
// rotation (the log renamed, a new one created) must be noticed through the directory's watch.
TEST_F(DebianTest, TailFollowsALogThroughRestoreAndRotation) {
  fs::path log = dir_ / "app.log", out_path = dir_ / "stdout";
  std::ofstream(log) << "one\n";
  int out = open_or_die(out_path, O_WRONLY | O_CREAT | O_TRUNC);
  start({"/usr/bin/tail", "-n", "+1", "-F", log.string()}, devnull_, out);
  ::close(out);
  ASSERT_TRUE(wait_for_text(out_path, "one\n", pid_, 5s)) << read_text(out_path);
  sleep_for(100ms);  // into its wait on the inotify instance
  ASSERT_TRUE(dump(false));
  ASSERT_TRUE(restore_detached());
  std::ofstream(log, std::ios::app) << "two\n";
  EXPECT_TRUE(wait_for_text(out_path, "one\ntwo\n", pid_, 5s)) << read_text(out_path);
  fs::rename(log, dir_ / "app.log.1");
  std::ofstream(log) << "three\n";
  EXPECT_TRUE(wait_for_text(out_path, "three\n", pid_, 5s)) << read_text(out_path);
  EXPECT_NE(read_text(dir_ / "stderr").find("following new file"), std::string::npos)
      << read_text(dir_ / "stderr");
}

// ping (iputils) holds raw ICMP sockets with a BPF filter that passes only its own replies and
// waits for them with a receive timeout (SO_RCVTIMEO), which is what wakes it to send the next
// request. After restore it must go on from the next sequence number, every request answered,
// and its summary must count them all.
// The icmp_seq numbers of ping's reply lines, in order.
std::vector<int> ping_seqs(const std::string& text) {
  std::vector<int> out;
  for (size_t at = text.find("icmp_seq="); at != std::string::npos;
       at = text.find("icmp_seq=", at + 1))
    out.push_back(std::stoi(text.substr(at + 9)));
  return out;
}

int last_ping_seq(const std::string& text) {
  auto seqs = ping_seqs(text);
  return seqs.empty() ? 0 : seqs.back();
}

// "" when the replies are 1, 2, 3... with none missing or repeated.
std::string ping_seq_problem(const std::string& text) {
  auto seqs = ping_seqs(text);
  for (size_t i = 0; i < seqs.size(); ++i)
    if (seqs[i] != static_cast<int>(i) + 1)
      return "reply " + std::to_string(i + 1) + " has icmp_seq=" + std::to_string(seqs[i]);
  return "";
}

class DebianPingTest : public DebianTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(DebianPingTest, GoesOnWithEveryRequestAnswered) {
  fs::path out_path = dir_ / "stdout";
  int out = open_or_die(out_path, O_WRONLY | O_CREAT | O_TRUNC);
  start({"/usr/bin/ping", "-n", "-i", "0.2", GetParam()}, devnull_, out);
  ::close(out);
  ASSERT_TRUE(wait_for_text(out_path, "icmp_seq=3 ", pid_, 5s)) << read_text(out_path);
  ASSERT_TRUE(dump(false));
  ASSERT_TRUE(restore_detached());
  std::string seq_after =
      "icmp_seq=" + std::to_string(last_ping_seq(read_text(out_path)) + 3) + " ";
  EXPECT_TRUE(wait_for_text(out_path, seq_after, pid_, 5s)) << read_text(out_path);
  ::kill(pid_, SIGINT);
  ASSERT_TRUE(wait_for_text(out_path, "packet loss", pid_, 5s) || !alive(pid_));
  sleep_for(100ms);
  std::string text = read_text(out_path);
  int last = last_ping_seq(text);
  EXPECT_EQ(ping_seq_problem(text), "") << text;
  std::string n = std::to_string(last);
  EXPECT_NE(text.find(n + " packets transmitted, " + n + " received, 0% packet loss"),
            std::string::npos)
      << text;
}

INSTANTIATE_TEST_SUITE_P(Loopback, DebianPingTest, ::testing::Values("127.0.0.1", "::1"),
                         [](const auto& info) { return info.index == 0 ? "IPv4" : "IPv6"; });

TEST_F(DebianTest, SleepStillSleepsAfterRestore) {
  int out = open_or_die(dir_ / "stdout", O_WRONLY | O_CREAT | O_TRUNC);
  start({"/usr/bin/sleep", "1000"}, devnull_, out);
  ::close(out);
  sleep_for(100ms);
  ASSERT_TRUE(dump(false));
  ASSERT_TRUE(restore_detached());
  sleep_for(300ms);
  ASSERT_TRUE(alive(pid_)) << stderr_text();
  std::string syscall = read_text("/proc/" + std::to_string(pid_) + "/syscall");
  EXPECT_EQ(syscall.substr(0, syscall.find(' ')), "230") << "not in clock_nanosleep: " << syscall;
  EXPECT_EQ(status_field(pid_, "State").substr(0, 1), "S");
}

}  // namespace
}  // namespace e2e
