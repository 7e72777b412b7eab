// The settings records (ThreadSettings, the process-wide ones in TaskRecord) survive a round
// trip through the image codec, and values restore could not use are refused by validation.
#include <gtest/gtest.h>

#include "image/schema/records.hpp"
#include "sample_image.hpp"

namespace ckpt::schema {
namespace {

ImageRoot with_settings() {
  ImageRoot image = fuzz::sample_image();
  ThreadSettings& s = image.processes[0].threads[0].settings;
  s.nice = 7;
  s.sched_policy = 6;
  s.sched_priority = 0;
  s.sched_flags = 1;
  s.sched_deadline = SchedDeadline{1000000, 5000000, 10000000};
  s.affinity = {0x1, 0x0, 0x8000000000000000};
  s.timer_slack_ns = 1000000;
  s.ioprio = (2 << 13) | 6;
  s.pdeathsig = 28;
  s.securebits = 0x14;
  s.caps = Capabilities{0x400, 0x802500, 0x802400, 0x802500, 0x400};
  s.mempolicy = MemPolicy{2, {1}};
  TaskRecord& t = image.processes[0].task;
  t.oom_score_adj = -17;
  t.child_subreaper = true;
  t.thp_disable = true;
  t.thp_except_advised = true;
  return image;
}

std::string decode_error(const ImageRoot& image) {
  auto r = decode_image(encode_image(image));
  return r.ok() ? "accepted" : r.error().message;
}

TEST(SettingsSchema, EverySettingSurvivesARoundTrip) {
  ImageRoot image = with_settings();
  auto r = decode_image(encode_image(image));
  ASSERT_TRUE(r.ok()) << r.error().message;
  const ThreadSettings& s = r->processes[0].threads[0].settings;
  EXPECT_EQ(s.nice, 7);
  EXPECT_EQ(s.sched_policy, 6u);
  EXPECT_EQ(s.sched_flags, 1u);
  ASSERT_TRUE(s.sched_deadline);
  EXPECT_EQ(s.sched_deadline->runtime, 1000000u);
  EXPECT_EQ(s.sched_deadline->deadline, 5000000u);
  EXPECT_EQ(s.sched_deadline->period, 10000000u);
  EXPECT_EQ(s.affinity, (std::vector<uint64_t>{0x1, 0x0, 0x8000000000000000}));
  EXPECT_EQ(s.timer_slack_ns, 1000000u);
  EXPECT_EQ(s.ioprio, (2 << 13) | 6);
  EXPECT_EQ(s.pdeathsig, 28);
  EXPECT_EQ(s.securebits, 0x14u);
  ASSERT_TRUE(s.caps);
  EXPECT_EQ(s.caps->inheritable, 0x400u);
  EXPECT_EQ(s.caps->permitted, 0x802500u);
  EXPECT_EQ(s.caps->effective, 0x802400u);
  EXPECT_EQ(s.caps->bounding, 0x802500u);
  EXPECT_EQ(s.caps->ambient, 0x400u);
  ASSERT_TRUE(s.mempolicy);
  EXPECT_EQ(s.mempolicy->mode, 2);
  EXPECT_EQ(s.mempolicy->nodes, std::vector<uint64_t>{1});
  const TaskRecord& t = r->processes[0].task;
  EXPECT_EQ(t.oom_score_adj, -17);
  EXPECT_EQ(t.child_subreaper, true);
  EXPECT_EQ(t.thp_disable, true);
  EXPECT_EQ(t.thp_except_advised, true);
  // A thread that saved none keeps them all absent.
  EXPECT_FALSE(r->processes[0].threads[1].settings.nice);
  EXPECT_FALSE(r->processes[0].threads[1].settings.caps);
}

TEST(SettingsSchema, ValuesRestoreCouldNotUseAreRefusedByPlace) {
  ImageRoot image = with_settings();
  image.processes[0].threads[0].settings.nice = 40;
  EXPECT_NE(decode_error(image).find("/processes/0/threads/0/settings/nice: 40"), std::string::npos)
      << decode_error(image);
  image = with_settings();
  image.processes[0].threads[0].settings.affinity.assign(129, 1);
  EXPECT_NE(decode_error(image).find("settings/affinity: 129 mask words"), std::string::npos);
  image = with_settings();
  image.processes[0].threads[0].settings.mempolicy->nodes.assign(17, 1);
  EXPECT_NE(decode_error(image).find("settings/mempolicy: 17 node mask words"), std::string::npos);
  image = with_settings();
  image.processes[0].threads[0].settings.pdeathsig = 65;
  EXPECT_NE(decode_error(image).find("settings/pdeathsig: signal 65"), std::string::npos);
}

}  // namespace
}  // namespace ckpt::schema
