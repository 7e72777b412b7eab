// File locks: what each /proc/locks or fdinfo line becomes in the image, which lines are refused,
// how held POSIX locks are counted, and the lock records' round trip through the image codec.
// The live behaviour (taking them again at restore) is tests/e2e/file_locks_test.cpp.
#include "resources/locks.hpp"

#include <gtest/gtest.h>

#include "image/schema/records.hpp"
#include "image/schema/validate.hpp"
#include "sample_image.hpp"

namespace ckpt {
namespace {

using schema::LockKind;
using schema::LockRecord;

LockRecord record(const std::string& line, bool read_only = false) {
  auto l = proc::parse_lock_line(line);
  EXPECT_TRUE(l.ok()) << line;
  if (!l.ok()) return {};
  auto r = locks::record_of(*l, read_only);
  EXPECT_TRUE(r.ok()) << line << ": " << r.error().message;
  return r.ok() ? *r : LockRecord{};
}

std::string refusal(const std::string& line) {
  auto l = proc::parse_lock_line(line);
  EXPECT_TRUE(l.ok()) << line;
  if (!l.ok()) return {};
  auto r = locks::record_of(*l, false);
  EXPECT_FALSE(r.ok()) << line;
  return r.ok() ? "" : r.error().message;
}

TEST(Locks, PosixRangeAndWholeFile) {
  LockRecord r = record("4: POSIX  ADVISORY  WRITE 22288 fe:00:10953447 0 99");
  EXPECT_EQ(r.kind, LockKind::posix);
  EXPECT_TRUE(r.write);
  EXPECT_EQ(r.start, 0u);
  EXPECT_EQ(r.end, 99u);
  EXPECT_EQ(locks::describe(r), "POSIX write lock on bytes 0-99");
  r = record("1: POSIX  ADVISORY  READ 5 08:04:262219 1073741826 EOF");
  EXPECT_FALSE(r.write);
  EXPECT_EQ(r.start, 1073741826u);
  EXPECT_FALSE(r.end);
  EXPECT_EQ(locks::describe(r), "POSIX read lock on bytes 1073741826-EOF");
}

TEST(Locks, OfdFlockAndLease) {
  LockRecord ofd = record("3: OFDLCK ADVISORY  READ -1 fe:00:10953447 200 209");
  EXPECT_EQ(ofd.kind, LockKind::ofd);
  EXPECT_FALSE(ofd.write);
  EXPECT_EQ(ofd.start, 200u);
  EXPECT_EQ(ofd.end, 209u);
  LockRecord fl = record("2: FLOCK  ADVISORY  WRITE 22288 fe:00:10953447 0 EOF");
  EXPECT_EQ(fl.kind, LockKind::flock);
  EXPECT_TRUE(fl.write);
  EXPECT_EQ(locks::describe(fl), "flock exclusive lock");
  LockRecord lease = record("1: LEASE  ACTIVE    READ 22288 fe:00:10953460 0 EOF", true);
  EXPECT_EQ(lease.kind, LockKind::lease);
  EXPECT_FALSE(lease.write);
  EXPECT_FALSE(lease.breaking);
  EXPECT_EQ(locks::describe(lease), "read lease");
}

// A lease being broken shows what it is broken to, not what it was.
TEST(Locks, BreakingLeaseIsTakenAgainAsItWas) {
  // Broken down to a read lease: it was a write lease.
  LockRecord r = record("1: LEASE  BREAKING  READ 2558 08:03:815793 0 EOF", true);
  EXPECT_TRUE(r.breaking);
  EXPECT_TRUE(r.write);
  // Broken to nothing: a read lease when the file is open read-only, else a write lease.
  EXPECT_FALSE(record("1: LEASE  BREAKING  UNLCK 2558 08:03:815793 0 EOF", true).write);
  EXPECT_TRUE(record("1: LEASE  BREAKING  UNLCK 2558 08:03:815793 0 EOF", false).write);
}

TEST(Locks, WhatCannotBeTakenAgainIsRefusedByName) {
  EXPECT_NE(refusal("1: DELEG  ACTIVE    READ 7 08:03:1 0 EOF").find("DELEG"), std::string::npos);
  EXPECT_NE(refusal("1: POSIX  MANDATORY WRITE 7 08:03:1 0 EOF").find("MANDATORY POSIX"),
            std::string::npos);
  EXPECT_NE(refusal("1: -> FLOCK  ADVISORY  WRITE 7 08:03:1 0 EOF").find("waits"),
            std::string::npos);
  EXPECT_NE(refusal("1: POSIX  ADVISORY  UNLCK 7 08:03:1 0 EOF").find("UNLCK"), std::string::npos);
}

TEST(Locks, RecordsRoundTripThroughTheCodec) {
  schema::OpenFile of;
  of.id = 3;
  of.kind = "file";
  of.path = "/tmp/x";
  of.locks.push_back({LockKind::flock, true, 0, std::nullopt, std::nullopt, false});
  of.locks.push_back({LockKind::lease, true, 0, std::nullopt, std::nullopt, true});
  schema::ProcessRecord p;
  p.pid = 42;
  p.locks.push_back({LockKind::posix, false, 1000, 1099, 10, false});
  auto of2 = schema::from_value<schema::OpenFile>(schema::encode(of), "of");
  ASSERT_TRUE(of2.ok()) << of2.error().message;
  EXPECT_EQ(of2->locks, of.locks);
  auto p2 = schema::from_value<schema::ProcessRecord>(schema::encode(p), "p");
  ASSERT_TRUE(p2.ok()) << p2.error().message;
  EXPECT_EQ(p2->locks, p.locks);
  // An image written before locks were saved has none.
  schema::Value old = schema::encode(of);
  old.erase("locks");
  auto of3 = schema::from_value<schema::OpenFile>(old, "of");
  ASSERT_TRUE(of3.ok()) << of3.error().message;
  EXPECT_TRUE(of3->locks.empty());
}

std::string invalid(const schema::ImageRoot& image) {
  Status st = schema::validate(image);
  return st.ok() ? "valid" : st.error().message;
}

// A decoded image's locks are where restore can take them: POSIX locks on a process's own fds,
// the others on files it opens by path or recreates.
TEST(Locks, ValidationPutsEachLockWhereItCanBeTaken) {
  schema::ImageRoot image = fuzz::sample_image();
  ASSERT_EQ(invalid(image), "valid");
  auto moved = image;
  moved.open_files[0].locks.push_back(moved.processes[0].locks[0]);
  EXPECT_EQ(invalid(moved), "/open_files/0/locks: a posix lock on a file");
  auto on_pipe = image;
  on_pipe.open_files[1].locks.push_back(image.open_files[3].locks[0]);
  EXPECT_EQ(invalid(on_pipe), "/open_files/1/locks: a flock lock on a pipe");
  auto no_fd = image;
  no_fd.processes[0].locks[0].fd = 3;
  EXPECT_NE(invalid(no_fd).find("/processes/0/locks: a lock of kind posix on fd 3"),
            std::string::npos)
      << invalid(no_fd);
  auto backwards = image;
  backwards.open_files[3].locks[0] = {LockKind::ofd, true, 10, 5, std::nullopt, false};
  EXPECT_EQ(invalid(backwards), "/open_files/3/locks: range 10-5");
}

}  // namespace
}  // namespace ckpt
