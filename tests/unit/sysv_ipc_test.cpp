// The System V IPC record of a process image: it survives the image's round trip, an image
// without it holds no objects, and a malformed one is refused naming the place.
#include <gtest/gtest.h>

#include "image/schema/records.hpp"
#include "resources/sysv_ipc.hpp"
#include "sample_image.hpp"

namespace ckpt::sysv_ipc {
namespace {

SysvIpcRecord sample() {
  SysvIpcRecord rec;
  ShmSegment s;
  s.ipc = {3, 0x5e001234, 1000, 1001, 0640};
  s.size = 12388;
  s.data = {{4096, 8192}, {12288, 12388}};
  s.removed = true;
  rec.shm.push_back(s);
  SemSet set;
  set.ipc = {1, 0, 0, 0, 0600};
  set.values = {3, 0, 7};
  set.pids = {4000, 0, 4001};
  rec.sem.push_back(set);
  MsgQueue q;
  q.ipc = {2, 0x42, 0, 0, 0620};
  q.qbytes = 16384;
  q.lspid = 4000;
  q.messages = {{2, {'a', 'b'}}, {5, {}}};
  rec.msg.push_back(q);
  return rec;
}

TEST(SysvIpcRecord, SurvivesTheImagesRoundTrip) {
  schema::ImageRoot image = fuzz::sample_image();
  image.sysv_ipc = schema::encode(sample());
  auto back = schema::decode_image(schema::encode_image(image));
  ASSERT_TRUE(back.ok()) << back.error().message;
  auto rec = record_of(*back);
  ASSERT_TRUE(rec.ok()) << rec.error().message;
  EXPECT_EQ(schema::encode(*rec), schema::encode(sample()));
  ASSERT_EQ(rec->msg.size(), 1u);
  EXPECT_EQ(rec->msg[0].messages[0].text, (schema::Bytes{'a', 'b'}));
  EXPECT_EQ(rec->shm[0].ipc.key, 0x5e001234);
  EXPECT_TRUE(rec->shm[0].removed);
}

TEST(SysvIpcRecord, AnImageWithoutItHoldsNoObjects) {
  schema::ImageRoot image = fuzz::sample_image();
  image.sysv_ipc.reset();
  auto back = schema::decode_image(schema::encode_image(image));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_FALSE(back->sysv_ipc.has_value());
  auto rec = record_of(*back);
  ASSERT_TRUE(rec.ok());
  EXPECT_TRUE(rec->empty());
}

TEST(SysvIpcRecord, AMalformedOneIsRefusedNamingThePlace) {
  schema::ImageRoot image = fuzz::sample_image();
  schema::Value v = schema::encode(sample());
  v["sem"][0]["values"] = "three";
  image.sysv_ipc = v;
  auto rec = record_of(image);
  ASSERT_FALSE(rec.ok());
  EXPECT_NE(rec.error().message.find("/sysv_ipc/sem/0/values"), std::string::npos)
      << rec.error().message;
}

}  // namespace
}  // namespace ckpt::sysv_ipc
