// The restore-side check that a restore never hands a thread capabilities the restoring ckpt
// does not have itself, against this test's own capabilities.
#include <unistd.h>

#include <gtest/gtest.h>

#include "proc/status.hpp"
#include "resources/settings.hpp"

namespace ckpt::settings {
namespace {

schema::ProcessRecord process_with(const schema::Capabilities& caps) {
  schema::ProcessRecord p;
  p.pid = 4242;
  schema::ThreadRecord main;
  main.tid = 4242;
  schema::ThreadRecord other;
  other.tid = 4243;
  other.settings.caps = caps;
  p.threads = {main, other};
  return p;
}

schema::Capabilities own_caps() {
  auto st = proc::read_status(::getpid());
  EXPECT_TRUE(st.ok());
  return {st->cap_inh, st->cap_prm, st->cap_eff, st->cap_bnd, st->cap_amb};
}

TEST(SettingsCheck, CapabilitiesWithinTheRestorersOwnAreAccepted) {
  auto r = check_before_restore(process_with(own_caps()));
  EXPECT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(check_before_restore(process_with({0, 0, 0, 0, 0})).ok());
}

TEST(SettingsCheck, ACapabilityTheRestorerLacksIsRefusedNamingTheThread) {
  // Bit 63 names no capability: nobody has it, in any set.
  constexpr uint64_t kNone = uint64_t{1} << 63;
  for (int set = 0; set < 5; ++set) {
    schema::Capabilities c = own_caps();
    uint64_t* fields[] = {&c.inheritable, &c.permitted, &c.effective, &c.bounding, &c.ambient};
    *fields[set] |= kNone;
    auto r = check_before_restore(process_with(c));
    ASSERT_FALSE(r.ok()) << "set " << set;
    EXPECT_NE(r.error().message.find("restore pid 4242: thread 4243 had capabilities "
                                     "0x8000000000000000"),
              std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("never hands a process more than the restorer has"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace ckpt::settings
