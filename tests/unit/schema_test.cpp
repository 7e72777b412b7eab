// The process image codec: every record survives a round trip, and an image that lacks a field,
// has a wrong type, an out-of-range number, an unknown version, broken references or hostile
// CBOR is refused with one error naming the place, never accepted or crashed on.
#include <gtest/gtest.h>

#include "common/fs_util.hpp"
#include "image/schema/records.hpp"
#include "image/schema/validate.hpp"
#include "image_test_util.hpp"
#include "restore/restore.hpp"
#include "sample_image.hpp"

namespace ckpt::schema {
namespace {

using fuzz::sample_image;

Value sample_value() {
  return encode(sample_image());
}

std::string decode_error(const Value& v) {
  auto r = decode_image(to_cbor(v));
  return r.ok() ? "accepted" : r.error().message;
}

std::string decode_error(const std::vector<std::byte>& bytes) {
  auto r = decode_image(bytes);
  return r.ok() ? "accepted" : r.error().message;
}

TEST(Schema, EveryRecordSurvivesARoundTrip) {
  ImageRoot image = sample_image();
  auto bytes = encode_image(image);
  auto back = decode_image(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(encode(*back), encode(image));
  EXPECT_EQ(back->processes[1].tree.group, GroupPlan::join);
  EXPECT_EQ(back->processes[0].threads[1].tid, 4001);
  EXPECT_EQ(back->processes[0].memory.vmas[0].pages[1].end, 0x1a000u);
  EXPECT_EQ(back->processes[2].zombie->comm, "gone");
  EXPECT_EQ(back->open_files[1].payload["data"].get_binary().size(), 3u);
  EXPECT_EQ(back->vdso.image.size(), 64u);
}

// An image whose processes hold many mappings: large enough (well over 256 KB) that its processes
// are decoded on several threads.
ImageRoot large_image() {
  ImageRoot image = sample_image();
  for (auto& p : image.processes) {
    if (p.zombie) continue;
    auto heap = p.memory.vmas.front();
    for (uint64_t k = 0; k < 2000; ++k) {
      heap.start = 0x100000 + k * 0x2000;
      heap.end = heap.start + 0x1000;
      heap.pages = {{heap.start, heap.end}};
      p.memory.vmas.push_back(heap);
    }
    std::sort(p.memory.vmas.begin(), p.memory.vmas.end(),
              [](const Vma& a, const Vma& b) { return a.start < b.start; });
  }
  return image;
}

TEST(Schema, ALargeTreeDecodedOnSeveralThreadsIsTheSameAsWritten) {
  ImageRoot image = large_image();
  auto bytes = encode_image(image);
  ASSERT_GT(bytes.size(), 512u << 10);
  auto back = decode_image(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(encode(*back), encode(image));
  ASSERT_EQ(back->processes.size(), image.processes.size());
  EXPECT_EQ(back->processes[1].memory.vmas.back().start, 0x100000u + 1999 * 0x2000);
}

TEST(Schema, ALargeTreeNamesItsFirstBrokenProcessWhicheverThreadMetItFirst) {
  Value v = encode(large_image());
  v["processes"][1]["threads"][0].erase("sigmask");
  EXPECT_EQ(decode_error(v),
            "the process image is malformed: /processes/1/threads/0/sigmask: missing");
  v["processes"][0]["memory"]["vmas"][1500]["prot"] = "rw";
  EXPECT_EQ(decode_error(v),
            "the process image is malformed: /processes/0/memory/vmas/1500/prot: expected an "
            "integer, found a string");
  v["processes"] = "none";
  EXPECT_EQ(decode_error(v),
            "the process image is malformed: /processes: expected an array, found a string");
  v["processes"] = Value::array();
  EXPECT_EQ(decode_error(v), "the process image is malformed: /processes: none");
}

TEST(Schema, BinaryDataIsStoredAsBytesNotText) {
  Value v = sample_value();
  EXPECT_TRUE(v["processes"][0]["threads"][0]["xstate"].is_binary());
  EXPECT_TRUE(v["processes"][0]["task"]["mm"]["auxv"].is_binary());
  EXPECT_TRUE(v["processes"][0]["seccomp_filters"][0]["prog"].is_binary());
}

TEST(Schema, AMissingFieldIsNamedByItsPath) {
  Value v = sample_value();
  v["processes"][1]["threads"][0].erase("sigmask");
  EXPECT_EQ(decode_error(v),
            "the process image is malformed: /processes/1/threads/0/sigmask: missing");
}

TEST(Schema, AWrongTypeIsNamedByItsPath) {
  Value v = sample_value();
  v["processes"][0]["threads"][0]["xstate"] = "00ff";
  EXPECT_EQ(decode_error(v),
            "the process image is malformed: /processes/0/threads/0/xstate: expected bytes, "
            "found a string");
}

TEST(Schema, NumbersOutOfTheirFieldsRangeAreRefused) {
  Value v = sample_value();
  v["processes"][0]["pid"] = uint64_t{1} << 40;
  EXPECT_NE(decode_error(v).find("/processes/0/pid: 1099511627776 is out of range"),
            std::string::npos);
  v = sample_value();
  v["processes"][0]["threads"][0]["sigmask"] = -1;
  EXPECT_NE(decode_error(v).find("sigmask: -1 is out of range"), std::string::npos);
  v = sample_value();
  v["processes"][0]["threads"][0]["tid"] = 1.5;
  EXPECT_NE(decode_error(v).find("tid: expected an integer, found a floating-point number"),
            std::string::npos);
}

TEST(Schema, AnUnknownEnumValueIsRefused) {
  Value v = sample_value();
  v["processes"][1]["tree"]["group"] = "adopt";
  EXPECT_NE(decode_error(v).find("/processes/1/tree/group: unknown value 'adopt'"),
            std::string::npos);
}

TEST(Schema, FieldsAddedLaterMayBeAbsentAndUnknownFieldsAreIgnored) {
  Value v = sample_value();
  v["processes"][0]["threads"][0].erase("settings");
  v["processes"][0]["task"].erase("oom_score_adj");
  v["processes"][0]["a_field_from_the_future"] = 7;
  auto r = decode_image(to_cbor(v));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->processes[0].task.oom_score_adj);
}

TEST(Schema, OtherVersionsAndArchitecturesAreRefusedByName) {
  Value v = sample_value();
  v["format"] = kProcessImageFormat + 1;
  EXPECT_NE(decode_error(v).find("newer than this ckpt reads"), std::string::npos);
  v["format"] = 2;
  EXPECT_NE(decode_error(v).find("older than this ckpt reads"), std::string::npos);
  v.erase("format");
  EXPECT_EQ(decode_error(v), "the process image has no format version");
  v = sample_value();
  v["arch"] = "aarch64";
  EXPECT_EQ(decode_error(v), "the process image was made on aarch64, this is x86_64");
}

TEST(Schema, BrokenReferencesAreRefused) {
  Value v = sample_value();
  v["processes"][0]["fds"][1]["open_file"] = 99;
  EXPECT_NE(decode_error(v).find("/processes/0/fds: fd 1 refers to open file 99"),
            std::string::npos);
  v = sample_value();
  v["processes"][1]["tree"]["ppid"] = 4010;
  EXPECT_NE(decode_error(v).find("process 4010 comes before its parent 4010"), std::string::npos);
  v = sample_value();
  v["processes"][0]["memory"]["vmas"][0]["pages"][0]["end"] = 0x30000;
  EXPECT_NE(decode_error(v).find("outside the mapping"), std::string::npos);
  v = sample_value();
  v["processes"][0]["memory"]["vmas"][1]["shm"] = 3;
  EXPECT_NE(decode_error(v).find("shared memory object 3 is not in the image"), std::string::npos);
  v = sample_value();
  v["processes"][0]["threads"][1]["tid"] = 4000;
  EXPECT_NE(decode_error(v).find("thread id 4000 is invalid or listed twice"), std::string::npos);
  v = sample_value();
  v["processes"][0]["task"]["exe_deleted"] = 7;
  EXPECT_NE(decode_error(v).find("/processes/0: exe_deleted names deleted file 7"),
            std::string::npos);
  v = sample_value();
  v["processes"][0]["memory"]["vmas"][0]["deleted_file"] = 7;
  EXPECT_NE(decode_error(v).find("/processes/0: a mapping names deleted file 7"),
            std::string::npos);
}

std::vector<std::byte> bytes_of(std::initializer_list<int> list) {
  std::vector<std::byte> out;
  for (int b : list) out.push_back(static_cast<std::byte>(b));
  return out;
}

TEST(Schema, HostileCborIsRefusedBeforeParsing) {
  // 100 000 nested one-element arrays: a recursive parser would run out of stack.
  std::vector<std::byte> deep(100000, std::byte{0x81});
  deep.push_back(std::byte{0x00});
  EXPECT_NE(decode_error(deep).find("nests deeper than 48"), std::string::npos);
  // An array claiming 2^62 elements, a string claiming more bytes than there are.
  EXPECT_NE(decode_error(bytes_of({0x9b, 0x40, 0, 0, 0, 0, 0, 0, 0})).find("longer than the input"),
            std::string::npos);
  EXPECT_NE(decode_error(bytes_of({0x7a, 0xff, 0xff, 0xff, 0xff, 0x61})).find("past the end"),
            std::string::npos);
  // Indefinite lengths, tags, trailing bytes, nothing at all.
  EXPECT_NE(decode_error(bytes_of({0x9f, 0xff})).find("indefinite"), std::string::npos);
  EXPECT_NE(decode_error(bytes_of({0xc1, 0x00})).find("tag"), std::string::npos);
  auto good = encode_image(sample_image());
  good.push_back(std::byte{0});
  EXPECT_NE(decode_error(good).find("1 bytes after the end"), std::string::npos);
  EXPECT_NE(decode_error(std::vector<std::byte>{}).find("ends inside an item"), std::string::npos);
}

TEST(Schema, EveryTruncationOfAnImageIsRefused) {
  auto good = encode_image(sample_image());
  for (size_t n = 0; n < good.size(); ++n) {
    auto r = decode_image(std::span(good).first(n));
    ASSERT_FALSE(r.ok()) << "a truncation to " << n << " bytes was accepted";
    ASSERT_FALSE(r.error().message.empty());
  }
}

TEST(Schema, DisplayJsonShowsBytesAsTheirSize) {
  std::string text = to_display_json(sample_value(), -1);
  EXPECT_NE(text.find("\"<576 bytes: 00000000000000000000000000000000...>\""), std::string::npos)
      << text.substr(0, 400);
}

// A generation written by the previous image format (a process.json section) is refused by name
// before anything is made, and so is a corrupt process image in the current one.
std::string restore_error(const std::string& section, std::span<const std::byte> bytes) {
  image::TempDir dir;
  auto store = image::Store::open(dir.path() / "s", {.create = true});
  if (!store.ok()) return store.error().message;
  auto w = store->begin_generation();
  if (!w.ok() || !(*w)->write_section(section, bytes).ok()) return "write failed";
  auto gen = (*w)->commit();
  if (!gen.ok()) return gen.error().message;
  RestoreOptions opts;
  opts.dry_run = true;
  auto r = restore_process(*store, opts);
  return r.ok() ? "restored" : r.error().message;
}

TEST(Schema, ImagesOfTheOlderFormatAreRefusedWithTheirVersion) {
  std::string old = R"({"engine_format": 2, "pid": 1, "processes": []})";
  std::string err = restore_error("process.json", as_bytes(old));
  EXPECT_NE(err.find("holds a process image of an older format (process.json"), std::string::npos)
      << err;
  EXPECT_NE(err.find("restore it with the ckpt that wrote it"), std::string::npos) << err;
}

TEST(Schema, ACorruptImageFailsTheRestoreWithItsPlace) {
  Value v = sample_value();
  v["open_files"][2].erase("kind");
  std::string err = restore_error(std::string(kProcessSection), to_cbor(v));
  EXPECT_NE(err.find("the process image is malformed: /open_files/2/kind: missing"),
            std::string::npos)
      << err;
}

}  // namespace
}  // namespace ckpt::schema
