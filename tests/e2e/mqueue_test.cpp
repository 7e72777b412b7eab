// POSIX message queues of a dumped tree (programs/mqueues.c): a named queue still there at
// restore gets the image's messages back whatever others did to it since, one removed comes back,
// and a queue someone else holds or made in its place is refused without being touched.
// ProgramTest covers the plain case (killed, restored over the queue it left).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <mqueue.h>

#include <sstream>

#include "test_process.hpp"

namespace e2e {
namespace {

// The named queue the program printed before READY ("QUEUE /NAME").
std::string queue_of(const TestProcess& p) {
  std::istringstream in(p.out());
  for (std::string line; std::getline(in, line);)
    if (line.rfind("QUEUE ", 0) == 0) return line.substr(6);
  return "";
}

long messages_in(mqd_t q) {
  mq_attr a{};
  return ::mq_getattr(q, &a) == 0 ? a.mq_curmsgs : -1;
}

class MqueueTest : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
};

// Dumped running; then a message is taken from the queue and another put in, and the program is
// killed: the restore puts the queue back as it was at the dump (the program checks order and
// priorities of all five).
TEST_F(MqueueTest, MessagesComeBackAsDumpedAfterOthersChangedTheQueue) {
  TestProcess p({program_path("mqueues")});
  ASSERT_TRUE(p.wait_ready());
  std::string name = queue_of(p);
  ASSERT_FALSE(name.empty()) << p.output();
  ASSERT_TRUE(p.dump({"--leave-running"}));
  mqd_t q = ::mq_open(name.c_str(), O_RDWR | O_NONBLOCK);
  ASSERT_GE(q, 0) << strerror(errno);
  char buf[128];
  unsigned prio = 0;
  ASSERT_EQ(::mq_receive(q, buf, sizeof buf, &prio), 6);
  ASSERT_EQ(prio, 9u);
  ASSERT_EQ(::mq_send(q, "later", 5, 7), 0);
  ASSERT_EQ(::mq_send(q, "later too", 9, 0), 0);
  ::mq_close(q);
  p.kill_now();
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish()) << p.output();
}

TEST_F(MqueueTest, QueueRemovedAfterTheDumpComesBackWithItsMessages) {
  TestProcess p({program_path("mqueues")});
  ASSERT_TRUE(p.wait_ready());
  std::string name = queue_of(p);
  ASSERT_TRUE(p.dump());
  ASSERT_EQ(::mq_unlink(name.c_str()), 0) << strerror(errno);
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish()) << p.output();
}

// Held open by a process outside the image at restore: its messages may be that process's
// business now. Refused, naming queue and process, and left as it is; once closed, the restore
// goes on.
TEST_F(MqueueTest, QueueHeldOpenOutsideTheImageIsRefusedAndLeftAlone) {
  TestProcess p({program_path("mqueues")});
  ASSERT_TRUE(p.wait_ready());
  std::string name = queue_of(p);
  ASSERT_TRUE(p.dump());
  mqd_t q = ::mq_open(name.c_str(), O_WRONLY);
  ASSERT_GE(q, 0) << strerror(errno);
  ASSERT_EQ(::mq_send(q, "outsider", 8, 1), 0);
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach"});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("the POSIX message queue " + name + " still exists and pid " +
                       std::to_string(::getpid()) + ", not in the image, holds it open"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(alive(p.pid()));
  EXPECT_EQ(messages_in(q), 6) << "ckpt changed a queue another process holds";
  ::mq_close(q);
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish()) << p.output();
}

// A new queue of the same name, made since the dump: not the image's, refused and left alone.
TEST_F(MqueueTest, AnotherQueueOfTheSameNameIsRefusedAndLeftAlone) {
  TestProcess p({program_path("mqueues")});
  ASSERT_TRUE(p.wait_ready());
  std::string name = queue_of(p);
  ASSERT_TRUE(p.dump());
  ASSERT_EQ(::mq_unlink(name.c_str()), 0);
  mq_attr attr{};
  attr.mq_maxmsg = 6;
  attr.mq_msgsize = 100;
  mqd_t q = ::mq_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
  ASSERT_GE(q, 0) << strerror(errno);
  ASSERT_EQ(::mq_send(q, "mine", 4, 1), 0);
  ::mq_close(q);
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach"});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_NE(r.err.find(name + " exists but is another queue than the image's"), std::string::npos)
      << r.err;
  q = ::mq_open(name.c_str(), O_RDONLY);
  ASSERT_GE(q, 0) << strerror(errno);
  EXPECT_EQ(messages_in(q), 1) << "ckpt changed a queue it did not make";
  ::mq_close(q);
  ASSERT_EQ(::mq_unlink(name.c_str()), 0);
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish()) << p.output();
}

}  // namespace
}  // namespace e2e
