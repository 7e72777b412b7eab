// PostgreSQL as a user runs it (as postgres, a postmaster with its checkpointer, writers and
// launchers): a System V segment every process attaches, shared anonymous memory, pipes,
// latches, a listening TCP socket. A row inserted before the dump must be selected after the
// restore, and the server must take new connections and write. (Unix-domain sockets are off:
// listening named unix sockets are another part of ckpt's work.)
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "e2e_util.hpp"
#include "net_util.hpp"

namespace e2e {
namespace {

const char* const kAsPostgres[] = {"/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres",
                                   "--init-groups"};

fs::path postgres_bin() {
  std::error_code ec;
  for (auto& d : fs::directory_iterator("/usr/lib/postgresql", ec))
    if (fs::exists(d.path() / "bin" / "postgres")) return d.path() / "bin";
  return {};
}

std::vector<std::string> as_postgres(std::vector<std::string> argv) {
  std::vector<std::string> out(std::begin(kAsPostgres), std::end(kAsPostgres));
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

class PostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    become_subreaper();
    shm_before_ = postgres_shm();
  }
  void TearDown() override {
    std::vector<pid_t> tree = pid_ > 0 ? descendants(pid_) : std::vector<pid_t>{};
    if (pid_ > 0) ::kill(pid_, SIGKILL);
    for (pid_t p : tree) ::kill(p, SIGKILL);
    if (pid_ > 0) tree.push_back(pid_);
    EXPECT_TRUE(reap_all(tree, {}));
    if (segment_ >= 0) ::shmctl(segment_, IPC_RMID, nullptr);  // a killed server leaves it
    // And its dynamic shared memory (POSIX, the default type, kept as it is the common case).
    for (auto& name : postgres_shm())
      if (!shm_before_.contains(name)) fs::remove(fs::path("/dev/shm") / name);
  }

  static std::set<std::string> postgres_shm() {
    std::set<std::string> out;
    std::error_code ec;
    for (auto& e : fs::directory_iterator("/dev/shm", ec))
      if (e.path().filename().string().starts_with("PostgreSQL.")) out.insert(e.path().filename());
    return out;
  }

  std::string sql(const std::string& statement) {
    auto r =
        run_command(as_postgres({(bin_ / "psql").string(), "-h", "127.0.0.1", "-p",
                                 std::to_string(port_), "-d", "postgres", "-tAq", "-c", statement}),
                    30s);
    return r.exit_code() == 0 ? r.out : "error: " + r.describe();
  }

  // The id of the System V segment the postmaster attaches (the inode of its SYSV mapping).
  int attached_segment() {
    std::ifstream maps(fs::path("/proc") / std::to_string(pid_) / "maps");
    for (std::string line; std::getline(maps, line);) {
      if (line.find("/SYSV") == std::string::npos) continue;
      std::istringstream f(line);
      std::string range, perms, offset, dev;
      int inode = -1;
      f >> range >> perms >> offset >> dev >> inode;
      return inode;
    }
    return -1;
  }

  TempDir dir_{"ckpt-postgres"};
  fs::path bin_ = postgres_bin();
  int port_ = free_port();
  pid_t pid_ = -1;
  int segment_ = -1;
  std::set<std::string> shm_before_;
};

TEST_F(PostgresTest, KeepsItsRowsAndServesNewConnectionsAfterRestore) {
  ASSERT_FALSE(bin_.empty()) << "postgresql is not installed (scripts/deps.sh installs it)";
  fs::path data = dir_ / "data";
  const passwd* pw = ::getpwnam("postgres");
  ASSERT_NE(pw, nullptr) << "no user postgres";
  fs::permissions(dir_.path(),
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  fs::create_directory(data);
  ASSERT_EQ(::chown(data.c_str(), pw->pw_uid, pw->pw_gid), 0);
  auto init = run_command(
      as_postgres({(bin_ / "initdb").string(), "-D", data.string(), "-A", "trust", "-N"}), 120s);
  ASSERT_EQ(init.exit_code(), 0) << init.describe();
  SpawnSpec spec;
  spec.argv = as_postgres({(bin_ / "postgres").string(), "-D", data.string(), "-c",
                           "listen_addresses=127.0.0.1", "-c", "port=" + std::to_string(port_),
                           "-c", "unix_socket_directories=", "-c", "logging_collector=off"});
  int log = open_or_die(dir_ / "log", O_WRONLY | O_CREAT | O_APPEND);
  int devnull = open_or_die("/dev/null", O_RDONLY);
  spec.fds[0] = devnull;
  spec.fds[1] = spec.fds[2] = log;
  pid_ = spawn(spec);
  ::close(log);
  ::close(devnull);
  std::string created;
  for (int i = 0; i < 100 && created != "1\n"; ++i) {
    sleep_for(200ms);
    created = sql("create table t (x int); insert into t values (42); select 1;");
  }
  ASSERT_EQ(created, "1\n") << created << read_text(dir_ / "log");
  segment_ = attached_segment();
  ASSERT_GE(segment_, 0) << "the postmaster attaches no System V segment";
  sleep_for(500ms);  // its connection's backend has gone

  auto before = descendants(pid_);
  before.push_back(pid_);
  auto d = run_ckpt({"dump", "-t", std::to_string(pid_), "-D", (dir_ / "store").string()}, 60s);
  ASSERT_EQ(d.exit_code(), 0) << d.describe();
  wait_child(pid_, 5s);
  ASSERT_TRUE(reap_all(before, {}));
  auto r = run_ckpt({"restore", "-D", (dir_ / "store").string(), "--detach"}, 60s);
  ASSERT_EQ(r.exit_code(), 0) << r.describe() << read_text(dir_ / "log");
  EXPECT_EQ(sql("select x from t;"), "42\n") << read_text(dir_ / "log");
  EXPECT_EQ(sql("insert into t values (43); select count(*) from t;"), "2\n");
  EXPECT_EQ(attached_segment(), segment_);
}

}  // namespace
}  // namespace e2e
