// Writing a generation: sections stream through one buffered data file (compressed on the way
// with zstd when asked) and a manifest is written last; commit() publishes the directory.
#include <fcntl.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <zstd.h>

#include "ckpt/version.hpp"
#include "common/checksum.hpp"
#include "common/fault_point.hpp"
#include "common/fs_util.hpp"
#include "common/phase_clock.hpp"
#include "common/populate.hpp"
#include "image/format.hpp"
#include "image/store_internal.hpp"

namespace ckpt::image {
namespace {

namespace fs = std::filesystem;

// Appends to a file through a large buffer; writes at least as large as the buffer bypass it.
class BufferedFile {
 public:
  // The buffer is backed at once: its first touch page by page is slow on a VM
  // (common/populate.hpp), and every dump makes a new one.
  BufferedFile(ScopedFd fd, std::string path)
      : fd_(std::move(fd)), path_(std::move(path)), buf_(detail::kIoChunk) {
    populate(buf_.data(), detail::kIoChunk);
  }

  Status append(std::span<const std::byte> data) {
    if (data.empty()) return {};
    // A whole chunk goes straight out: copying it into the buffer gains no bigger write.
    if (used_ + data.size() > detail::kIoChunk || data.size() >= detail::kIoChunk) {
      CKPT_TRY(flush());
      if (data.size() >= detail::kIoChunk) return write_through(data);
    }
    std::memcpy(buf_.bytes() + used_, data.data(), data.size());
    used_ += data.size();
    size_ += data.size();
    return {};
  }

  Status flush() {
    if (used_ == 0) return {};
    size_ -= used_;
    CKPT_TRY(write_through(std::span(buf_.bytes(), used_)));
    used_ = 0;
    return {};
  }

  Status sync() {
    CKPT_TRY(flush());
    return fsync_fd(fd_.get(), path_);
  }

  uint64_t size() const { return size_; }

 private:
  // The disk starts writing every kWriteback bytes as they come, so that the commit's fsync
  // waits only for the last of them rather than for the whole image (a no-op on tmpfs).
  static constexpr uint64_t kWriteback = uint64_t{32} << 20;

  Status write_through(std::span<const std::byte> data) {
    CKPT_TRY(write_all(fd_.get(), data, path_));
    size_ += data.size();
    if (size_ - started_ >= kWriteback) {
      (void)::sync_file_range(fd_.get(), static_cast<off_t>(started_),
                              static_cast<off_t>(size_ - started_), SYNC_FILE_RANGE_WRITE);
      started_ = size_;
    }
    return {};
  }

  ScopedFd fd_;
  std::string path_;
  HugeBuffer buf_;
  size_t used_ = 0;
  uint64_t size_ = 0;     // bytes appended, buffered ones included
  uint64_t started_ = 0;  // bytes whose writeback was started
};

// Runs the jobs write_behind() queues, in order, on a thread of its own: the memory dump reads
// its next buffer from the process while the last one is checksummed and written, the two
// halves of a dump's time (docs/engine.md, "memory::dump"). The thread starts with the first
// job; jobs after an error are dropped and the error is kept for settle().
class WriteBehind {
 public:
  WriteBehind() = default;
  WriteBehind(const WriteBehind&) = delete;
  WriteBehind& operator=(const WriteBehind&) = delete;
  ~WriteBehind() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void start() {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }

  uint64_t queue(std::function<Status()> job) {
    start();
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
    wake_.notify_all();
    return ++queued_;
  }

  Status settle(uint64_t ticket) {
    std::unique_lock lock(mutex_);
    ticket = std::min(ticket, queued_);
    done_cv_.wait(lock, [&] { return done_ >= ticket; });
    if (error_) return *error_;
    return {};
  }

  Status drain() { return settle(UINT64_MAX); }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      std::function<Status()> job = std::move(jobs_.front());
      jobs_.pop_front();
      bool skip = error_.has_value();
      lock.unlock();
      Status st = skip ? Status{} : job();
      lock.lock();
      if (!st.ok() && !error_) error_ = st.error();
      ++done_;
      done_cv_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_cv_;
  std::deque<std::function<Status()>> jobs_;
  uint64_t queued_ = 0, done_ = 0;
  std::optional<Error> error_;
  bool stopping_ = false;
  std::thread thread_;
};

struct ZstdCCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

class GenerationWriterImpl;

class SectionWriterImpl final : public SectionWriter {
 public:
  SectionWriterImpl(GenerationWriterImpl* gen, SectionMeta meta)
      : gen_(gen), meta_(std::move(meta)) {}
  Status write(std::span<const std::byte> data) override;
  Result<uint64_t> write_behind(std::span<const std::byte> data,
                                std::function<void()> first) override;
  Status settle(uint64_t ticket) override;
  Status finish() override;
  bool finished() const { return finished_; }
  const SectionMeta& meta() const { return meta_; }

 private:
  Status store(std::span<const std::byte> data);
  Status emit(std::span<const std::byte> stored);
  Status compress(std::span<const std::byte> data, ZSTD_EndDirective mode);

  GenerationWriterImpl* gen_;
  SectionMeta meta_;
  Checksum64 sum_;
  bool finished_ = false;
};

class GenerationWriterImpl final : public GenerationWriter {
 public:
  GenerationWriterImpl(fs::path store, detail::TempDir tmp, BufferedFile data, WriteOptions opts)
      : store_(std::move(store)), tmp_(std::move(tmp)), data_(std::move(data)), opts_(opts) {
    info_.created_unix_ns = detail::now_unix_ns();
    info_.format_version = format::kVersion;
    info_.writer_version = CKPT_VERSION_STRING;
  }
  ~GenerationWriterImpl() override {
    (void)behind_.drain();
    if (!committed_) {
      std::error_code ec;
      fs::remove_all(tmp_.path, ec);
    }
  }

  void set_label(std::string key, std::string value) override {
    info_.labels[std::move(key)] = std::move(value);
  }
  Result<SectionWriter*> begin_section(std::string_view name) override;
  Result<GenerationInfo> commit() override;
  void start_write_behind() override { behind_.start(); }

  // For SectionWriterImpl.
  BufferedFile& data() { return data_; }
  ZSTD_CCtx* cctx() { return cctx_.get(); }
  std::span<std::byte> zbuf() { return zbuf_; }
  const WriteOptions& options() const { return opts_; }
  WriteBehind& behind() { return behind_; }
  Status fail(Error e) {
    failed_ = true;
    return e;
  }
  void add_section(const SectionMeta& meta) { info_.sections.push_back(meta); }

 private:
  Status write_manifest();

  fs::path store_;
  detail::TempDir tmp_;
  BufferedFile data_;
  WriteOptions opts_;
  GenerationInfo info_;
  std::unique_ptr<SectionWriterImpl> current_;
  std::set<std::string, std::less<>> names_;
  std::unique_ptr<ZSTD_CCtx, ZstdCCtxFree> cctx_;
  std::vector<std::byte> zbuf_;
  bool committed_ = false;
  std::atomic<bool> failed_ = false;  // set by the write-behind thread too
  WriteBehind behind_;                // last: its thread uses the members above
};

Status SectionWriterImpl::emit(std::span<const std::byte> stored) {
  sum_.update(stored);
  meta_.stored_size += stored.size();
  Status st = gen_->data().append(stored);
  if (!st.ok()) return gen_->fail(st.error());
  return {};
}

Status SectionWriterImpl::compress(std::span<const std::byte> data, ZSTD_EndDirective mode) {
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  auto zbuf = gen_->zbuf();
  for (;;) {
    ZSTD_outBuffer out{zbuf.data(), zbuf.size(), 0};
    size_t left = ZSTD_compressStream2(gen_->cctx(), &out, &in, mode);
    if (ZSTD_isError(left))
      return gen_->fail(errorf("compress section '{}': {}", meta_.name, ZSTD_getErrorName(left)));
    CKPT_TRY(emit(std::span(zbuf.data(), out.pos)));
    bool done = mode == ZSTD_e_end ? left == 0 : in.pos == in.size;
    if (done) return {};
  }
}

Status SectionWriterImpl::store(std::span<const std::byte> data) {
  if (meta_.compression == Compression::zstd) return compress(data, ZSTD_e_continue);
  return emit(data);
}

Status SectionWriterImpl::write(std::span<const std::byte> data) {
  // A dump streams process memory through here buffer by buffer: "mid-memory-read" for the
  // fault-injection tests.
  fault::point("during", "section write");
  if (finished_) return errorf("section '{}': write after finish", meta_.name);
  CKPT_TRY(gen_->behind().drain());
  meta_.raw_size += data.size();
  return store(data);
}

Result<uint64_t> SectionWriterImpl::write_behind(std::span<const std::byte> data,
                                                 std::function<void()> first) {
  fault::point("during", "section write");
  if (finished_) return errorf("section '{}': write after finish", meta_.name);
  meta_.raw_size += data.size();
  return gen_->behind().queue([this, data, first = std::move(first)] {
    if (first) first();
    return store(data);
  });
}

Status SectionWriterImpl::settle(uint64_t ticket) {
  return gen_->behind().settle(ticket);
}

Status SectionWriterImpl::finish() {
  if (finished_) return errorf("section '{}': finished twice", meta_.name);
  CKPT_TRY(gen_->behind().drain());
  if (meta_.compression == Compression::zstd) CKPT_TRY(compress({}, ZSTD_e_end));
  meta_.checksum = sum_.digest();
  finished_ = true;
  gen_->add_section(meta_);
  return {};
}

Result<SectionWriter*> GenerationWriterImpl::begin_section(std::string_view name) {
  if (committed_) return errorf("begin section '{}': generation already committed", name);
  CKPT_TRY(behind_.drain());
  if (failed_) return errorf("begin section '{}': an earlier write failed", name);
  if (current_ && !current_->finished())
    return errorf("begin section '{}': section '{}' is not finished", name, current_->meta().name);
  if (name.empty()) return errorf("begin section: empty name");
  if (!names_.insert(std::string(name)).second)
    return errorf("begin section '{}': duplicate name", name);
  SectionMeta meta;
  meta.name = std::string(name);
  meta.file = std::string(format::kDataName);
  meta.offset = data_.size();
  meta.compression = opts_.compression;
  if (meta.compression == Compression::zstd) {
    if (!cctx_) {
      cctx_.reset(ZSTD_createCCtx());
      zbuf_.resize(ZSTD_CStreamOutSize() * 8);
    }
    ZSTD_CCtx_reset(cctx_.get(), ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_compressionLevel, opts_.zstd_level);
  }
  current_ = std::make_unique<SectionWriterImpl>(this, std::move(meta));
  return current_.get();
}

Status GenerationWriterImpl::write_manifest() {
  info_.files = {{std::string(format::kDataName), data_.size()}};
  auto bytes = format::encode_manifest(info_);
  auto path = tmp_.path / format::kManifestName;
  CKPT_TRY_ASSIGN(ScopedFd fd, open_file(path, O_WRONLY | O_CREAT | O_EXCL, 0600));
  CKPT_TRY(write_all(fd.get(), bytes, path.string()));
  return fsync_fd(fd.get(), path.string());
}

Result<GenerationInfo> GenerationWriterImpl::commit() {
  if (committed_) return errorf("commit: generation already committed");
  CKPT_TRY(behind_.drain());
  if (failed_) return errorf("commit: an earlier write failed");
  if (current_ && !current_->finished())
    return errorf("commit: section '{}' is not finished", current_->meta().name);
  failed_ = true;  // until the end: a failed commit cannot be retried
  PhaseClock clock("image", "commit");
  CKPT_TRY(data_.sync());
  clock.mark("data synced");
  CKPT_TRY(write_manifest());
  CKPT_TRY(fsync_dir(tmp_.path));
  clock.mark("manifest written");
  CKPT_TRY_ASSIGN(std::string id, detail::publish(store_, tmp_.path));
  clock.mark("published");
  committed_ = true;
  failed_ = false;
  info_.id = id;
  info_.path = store_ / id;
  info_.total_bytes = data_.size();
  std::error_code ec;
  auto msize = fs::file_size(info_.path / format::kManifestName, ec);
  if (!ec) info_.total_bytes += msize;
  return info_;
}

}  // namespace

Status GenerationWriter::write_section(std::string_view name, std::span<const std::byte> data) {
  CKPT_TRY_ASSIGN(SectionWriter * s, begin_section(name));
  CKPT_TRY(s->write(data));
  return s->finish();
}

Result<std::unique_ptr<GenerationWriter>> detail::make_writer(const fs::path& store,
                                                              WriteOptions opts) {
  if (opts.compression != Compression::none && opts.compression != Compression::zstd)
    return errorf("begin generation: unknown compression {}", static_cast<int>(opts.compression));
  CKPT_TRY_ASSIGN(TempDir tmp, make_temp_dir(store));
  auto data_path = tmp.path / format::kDataName;
  auto fd = open_file(data_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (!fd.ok()) {
    std::error_code ec;
    fs::remove_all(tmp.path, ec);
    return fd.error();
  }
  BufferedFile data(std::move(*fd), data_path.string());
  auto header = format::data_header();
  Status st = data.append(header);
  if (!st.ok()) return st.error();
  return std::unique_ptr<GenerationWriter>(
      new GenerationWriterImpl(store, std::move(tmp), std::move(data), opts));
}

}  // namespace ckpt::image
