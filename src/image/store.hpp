#pragma once
// The checkpoint store: a directory of generations. A generation is one complete checkpoint: a
// directory holding a manifest and data files with named sections. Everything that writes an
// image (dump, the supervisor, the in-process API) goes through this interface.
//
// Publication is atomic: a generation is written under a temporary name and renamed into place
// after its files and the directory are fsynced. Opening a store removes leftovers of
// interrupted writes. Format: docs/image-format.md.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt::image {

enum class Compression : uint8_t { none = 0, zstd = 1 };

struct SectionMeta {
  std::string name;          // unique within a generation, e.g. "memory.pages", "threads"
  std::string file;          // data file inside the generation directory
  uint64_t offset = 0;       // where the stored bytes start in `file`
  uint64_t stored_size = 0;  // bytes in the file (compressed size when compressed)
  uint64_t raw_size = 0;     // bytes after decompression
  Compression compression = Compression::none;
  uint64_t checksum = 0;  // XXH3-64 of the stored bytes
};

// A file of a generation other than the manifest, with the size the manifest records for it.
struct DataFileInfo {
  std::string name;
  uint64_t size = 0;
};

// Whose stores a reader accepts (docs/security.md). By default every directory and file of a
// store must belong to the caller or root and be writable by no one else, and the directories
// above it must not let another user swap it: a checksum proves that an image is whole, not who
// wrote it, and a restore runs whatever the image holds with the restorer's privileges.
struct Trust {
  bool any_owner = false;  // accept files of other users and group/world-writable ones
};

struct GenerationInfo {
  std::string id;               // directory name; ids sort by creation time
  std::filesystem::path path;   // absolute path of the generation directory
  int64_t created_unix_ns = 0;  // wall-clock time of creation
  uint32_t format_version = 0;
  std::string writer_version;                 // ckpt version that wrote it
  std::map<std::string, std::string> labels;  // free-form: "kind"="process", "pid"="1234", ...
  std::vector<SectionMeta> sections;
  std::vector<DataFileInfo> files;  // the data files the sections live in
  uint64_t total_bytes = 0;         // all files of the generation, as stored
  Trust trust = {};                 // not stored: how read_generation was told to check files

  const SectionMeta* find_section(std::string_view name) const;
};

// A generation that could not be used, and why (one line naming the file and the cause).
struct Problem {
  std::string id;
  std::string message;
};

struct WriteOptions {
  Compression compression = Compression::none;
  int zstd_level = 1;
};

// Streams one section into a generation being written. Obtained from GenerationWriter.
class SectionWriter {
 public:
  virtual ~SectionWriter() = default;
  virtual Status write(std::span<const std::byte> data) = 0;
  // Like write(), but `data` may still be checksummed and written on a thread of the generation
  // after the call returns: the caller leaves it unchanged until settle() of the returned ticket
  // (the memory dump reads its next buffer meanwhile). An error shows in a later call. `first`,
  // if given, runs on that thread just before: work on the same bytes that the caller need not
  // wait for (the page index's hashes).
  virtual Result<uint64_t> write_behind(std::span<const std::byte> data,
                                        std::function<void()> first = {}) {
    if (first) first();
    CKPT_TRY(write(data));
    return 0;
  }
  // Waits until the write_behind() calls up to `ticket` are done.
  virtual Status settle(uint64_t ticket) {
    (void)ticket;
    return {};
  }
  // Ends the section; after this the writer must not be used.
  virtual Status finish() = 0;
};

// Writes one new generation. Destroying it without commit() removes everything it wrote.
class GenerationWriter {
 public:
  virtual ~GenerationWriter() = default;
  virtual void set_label(std::string key, std::string value) = 0;
  // Sections are written one at a time: finish the previous one before beginning the next.
  virtual Result<SectionWriter*> begin_section(std::string_view name) = 0;
  Status write_section(std::string_view name, std::span<const std::byte> data);
  // Starts the thread of SectionWriter::write_behind() now rather than at its first use: it takes
  // the calling thread's CPU mask, and a dump pins its own threads to one CPU while it works.
  virtual void start_write_behind() {}
  // Fsyncs and publishes atomically; returns the published generation.
  virtual Result<GenerationInfo> commit() = 0;
};

// Reads one section, verifying its checksum. read() returns raw (decompressed) bytes; a checksum
// mismatch is reported by the read that reaches the end of the section at the latest.
class SectionReader {
 public:
  virtual ~SectionReader() = default;
  // Reads up to out.size() raw bytes; returns 0 at the end of the section.
  virtual Result<size_t> read(std::span<std::byte> out) = 0;
  virtual const SectionMeta& meta() const = 0;
};

struct Retention {
  std::optional<size_t> keep = std::nullopt;         // keep at most this many generations
  std::optional<uint64_t> max_bytes = std::nullopt;  // and at most this many bytes in all
};

struct RetentionReport {
  std::vector<std::string> removed;
};

struct OpenOptions {
  // Create the store directory if missing. Either way the directory is then made 0700 (it must
  // belong to the caller), and a lost or damaged marker is written again.
  bool create = false;
  Trust trust = {};
};

// The exclusive run lock of a store (an flock on DIR/lock, held until destruction). The lock
// belongs to the open file: a child forked while it is held shares it until it exits or execs.
class StoreLock {
 public:
  StoreLock() = default;
  explicit StoreLock(ScopedFd fd) : fd_(std::move(fd)) {}
  bool held() const { return fd_.valid(); }
  void release() { fd_.reset(); }

 private:
  ScopedFd fd_;
};

// Reads the manifest of the generation directory `dir` (checking the manifest's own checksums,
// not the data). Used for a store's generations and for a generation given directly. The
// directory and its files are checked against `trust`; the directories above it are not (see
// check_trusted_path). Every file of a generation is opened without following a symbolic link
// and without blocking, and must be a regular file.
Result<GenerationInfo> read_generation(const std::filesystem::path& dir, Trust trust = {});
// Checks that `dir` (an existing directory) and every directory above it may be trusted: owned by
// the caller or root, and writable by no one else unless sticky (like /tmp) for the ones above.
Status check_trusted_path(const std::filesystem::path& dir, Trust trust);
// Checks the sizes and data headers of a generation's files (not the checksums): cheap, for
// readers that check each section's checksum as they stream it.
Status verify_generation_files(const GenerationInfo& gen);
// Checks file sizes, data headers and every section checksum of a generation; the error names
// the generation, the first bad section, its file and offset.
Status verify_generation(const GenerationInfo& gen);
Result<std::unique_ptr<SectionReader>> open_generation_section(const GenerationInfo& gen,
                                                               std::string_view name);
// True if `dir` is a store: it holds the store marker, or (the marker being damaged or lost)
// at least one generation whose manifest reads.
bool is_store(const std::filesystem::path& dir);

class Store {
 public:
  // Opens (or creates) the store at `dir` and cleans leftovers of interrupted writes. Fails with a
  // clear message if `dir` exists but is not a store, or cannot be trusted (opts.trust).
  static Result<Store> open(const std::filesystem::path& dir, OpenOptions opts = {});

  const std::filesystem::path& dir() const { return dir_; }

  Result<std::unique_ptr<GenerationWriter>> begin_generation(WriteOptions opts = {});

  // Every generation whose manifest reads, newest first. Unreadable ones go to *problems.
  std::vector<GenerationInfo> list(std::vector<Problem>* problems = nullptr) const;
  // The newest generation whose every checksum verifies; skipped ones go to *skipped.
  Result<GenerationInfo> latest_valid(std::vector<Problem>* skipped = nullptr) const;
  Result<GenerationInfo> find(std::string_view id) const;

  // Checks every checksum of a generation; the error names the first bad section, file and offset.
  Status verify(const GenerationInfo& gen) const;

  Result<std::unique_ptr<SectionReader>> open_section(const GenerationInfo& gen,
                                                      std::string_view name) const;
  Result<std::vector<std::byte>> read_section(const GenerationInfo& gen,
                                              std::string_view name) const;

  // Removes old generations beyond the limits, never the newest valid one.
  Result<RetentionReport> apply_retention(const Retention& r) const;

  // Takes the exclusive run lock; fails with "store DIR is in use by pid N (OWNER)" when another
  // holder has it. `owner` is recorded for that message, e.g. "ckpt run".
  Result<StoreLock> lock(std::string_view owner) const;

 private:
  Store(std::filesystem::path dir, Trust trust) : dir_(std::move(dir)), trust_(trust) {}
  std::filesystem::path dir_;
  Trust trust_;
};

}  // namespace ckpt::image
