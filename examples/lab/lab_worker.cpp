// The lab's worker (OS II lab 2, tasks 2.1 and 3.x). Reads one command per line from stdin:
//   N > 0    prints N random numbers in [0, N], one per line
//   N < 0    exits with status N (N mod 256; a multiple of 256 exits 1 so it still looks like a
//            crash to the monitor)
//   other    writes every number generated so far to OUT at once and exits 0 (so does EOF)
//
//   lab-worker [--checkpoint-interval SECONDS] [--restore] OUT                 (tasks 3.x)
//   lab-worker --images DIR [--dump-interval SECONDS] [--dump-on-sigusr1] OUT   (tasks 2.2, 2.3)
//
// With --checkpoint-interval the state (generator and numbers) is checkpointed with libckpt
// into the current directory after an input, once SECONDS have passed since the last
// checkpoint (0: after every input). --restore first loads the newest valid checkpoint.
//
// With --dump-interval the whole process checkpoints itself with ckpt_dump() into DIR after an
// input, once SECONDS have passed since its last one (task 2.2); with --dump-on-sigusr1 it does
// so whenever it receives SIGUSR1 (task 2.3). The monitor restores it with ckpt_restore_child().
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/ckpt.hpp"

namespace {

constexpr uint64_t kDefaultSeed = 2016;
constexpr long long kMaxCount = 10'000'000;  // bounds memory: numbers are kept until the end

// splitmix64: the whole generator is one uint64_t, so a checkpoint captures it exactly. rand()
// hides its state inside libc, where no checkpoint can reach it.
struct Generator {
  uint64_t state = kDefaultSeed;

  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, max], by rejection so that no value is favoured.
  uint32_t uniform(uint32_t max) {
    uint64_t range = uint64_t{max} + 1;
    uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t r;
    do r = next();
    while (r >= limit);
    return static_cast<uint32_t>(r % range);
  }
};

struct Options {
  std::string out;
  std::optional<long> interval;  // seconds; none = no checkpoints
  bool restore = false;
  std::string images;                 // ckpt_dump's images directory
  std::optional<long> dump_interval;  // seconds
  bool dump_on_sigusr1 = false;
};

// Set by the SIGUSR1 handler; the checkpoint itself is taken by the main code, outside it.
volatile sig_atomic_t g_dump_requested = 0;

void on_sigusr1(int) {
  g_dump_requested = 1;
}

void write_fd(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

void say(std::string_view s) {
  write_fd(STDERR_FILENO, "lab-worker: " + std::string(s) + "\n");
}

// One line from stdin, read byte by byte: stdio would read ahead, and bytes it buffered would be
// lost with a crashed worker instead of reaching the restarted one. nullopt at end of input.
// A read interrupted by a signal has taken no byte; `on_interrupt` runs before it is retried.
template <typename F>
std::optional<std::string> read_line(F on_interrupt) {
  std::string line;
  for (;;) {
    char c;
    ssize_t n = ::read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) {
      on_interrupt();
      continue;
    }
    if (n <= 0) return line.empty() ? std::nullopt : std::optional(line);
    if (c == '\n') return line;
    line.push_back(c);
  }
}

std::optional<long long> parse_integer(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

bool parse_args(int argc, char** argv, Options* opts) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--restore") {
      opts->restore = true;
    } else if (a == "--images" && i + 1 < argc) {
      opts->images = argv[++i];
    } else if (a == "--dump-on-sigusr1") {
      opts->dump_on_sigusr1 = true;
    } else if (a == "--dump-interval" && i + 1 < argc) {
      auto v = parse_integer(argv[++i]);
      if (!v || *v < 0) return false;
      opts->dump_interval = static_cast<long>(*v);
    } else if (a == "--checkpoint-interval" && i + 1 < argc) {
      auto v = parse_integer(argv[++i]);
      if (!v || *v < 0) return false;
      opts->interval = static_cast<long>(*v);
    } else if (opts->out.empty() && !a.starts_with("--")) {
      opts->out = a;
    } else {
      return false;
    }
  }
  if ((opts->dump_interval || opts->dump_on_sigusr1) && opts->images.empty()) return false;
  return !opts->out.empty();
}

class Worker {
 public:
  explicit Worker(uint64_t seed) { gen_.state = seed; }

  // Registers the whole state: the generator as raw bytes, the numbers through a serializer.
  ckpt::AppStatus register_state(ckpt::AppState& st) {
    if (auto s = st.add_object("generator", gen_.state); !s) return s;
    return st.add_serialized(
        "numbers",
        [this] {
          std::vector<std::byte> b(numbers_.size() * sizeof(uint32_t));
          if (!b.empty()) std::memcpy(b.data(), numbers_.data(), b.size());
          return b;
        },
        [this](std::span<const std::byte> b) {
          if (b.size() % sizeof(uint32_t) != 0) return false;
          numbers_.resize(b.size() / sizeof(uint32_t));
          if (!b.empty()) std::memcpy(numbers_.data(), b.data(), b.size());
          return true;
        });
  }

  void generate(uint32_t n) {
    std::string text;
    for (uint32_t i = 0; i < n; ++i) {
      numbers_.push_back(gen_.uniform(n));
      text += std::to_string(numbers_.back());
      text += '\n';
    }
    write_fd(STDOUT_FILENO, text);
  }

  // All numbers in one write, as the lab asks.
  int write_output(const std::string& path) const {
    std::string text;
    for (uint32_t v : numbers_) text += std::to_string(v) + "\n";
    write_fd(STDOUT_FILENO, "Writing output to " + path + "... ");
    FILE* f = std::fopen(path.c_str(), "w");
    bool ok = f && std::fwrite(text.data(), 1, text.size(), f) == text.size();
    int err = errno;
    if (f && std::fclose(f) != 0 && ok) {
      ok = false;
      err = errno;
    }
    if (!ok) {
      write_fd(STDOUT_FILENO, std::string("failed: ") + std::strerror(err) + "\n");
      return 1;
    }
    write_fd(STDOUT_FILENO, "Done.\n");
    return 0;
  }

  size_t count() const { return numbers_.size(); }

 private:
  Generator gen_;
  std::vector<uint32_t> numbers_;
};

uint64_t seed_from_env() {
  const char* s = std::getenv("CKPT_LAB_SEED");
  if (!s || !*s) return kDefaultSeed;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s, s + std::strlen(s), v);
  if (ec != std::errc() || *p) {
    say(std::string("ignoring CKPT_LAB_SEED='") + s + "': not an unsigned integer");
    return kDefaultSeed;
  }
  return v;
}

void restore(ckpt::AppState& st, const Worker& w) {
  auto r = st.restore();
  if (!r) {
    say("restore failed: " + r.error().message + "; starting from scratch");
    return;
  }
  for (auto& s : r->skipped) say("skipped " + s);
  if (r->restored)
    say("restored " + r->path + " (" + std::to_string(w.count()) + " numbers)");
  else
    say("no valid checkpoint; starting from scratch");
}

// Whole-process checkpoint (tasks 2.2, 2.3). In a copy restored from it, ckpt_dump() returns 1
// and the worker simply goes on from here.
void dump_self(const Worker& w) {
  g_dump_requested = 0;
  int r = ckpt_dump();
  if (r == 1)
    say("restored from a checkpoint (" + std::to_string(w.count()) + " numbers)");
  else if (r < 0)
    say(std::string("checkpoint failed: ") + ckpt_last_error());
}

// Returns false (after saying why) if the in-process API cannot be set up.
bool setup_dumps(const Options& opts) {
  if (opts.images.empty()) return true;
  ckpt_init_opts();
  if (int r = ckpt_set_images_dir(opts.images.c_str()); r < 0) {
    say("images directory " + opts.images + ": " + std::strerror(-r));
    return false;
  }
  // stdin/stdout come from the monitor (a terminal or a pipe): they are the restorer's at restore.
  ckpt_set_shell_job(1);
  ckpt_set_leave_running(1);
  if (opts.dump_on_sigusr1) {
    // No SA_RESTART: a read blocked on stdin returns EINTR (taking no byte), so the checkpoint
    // is taken at once and not only after the next input.
    struct sigaction sa {};
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, nullptr) < 0) {
      say(std::string("sigaction: ") + std::strerror(errno));
      return false;
    }
  }
  return true;
}

int run(const Options& opts) {
  if (!setup_dumps(opts)) return 1;
  Worker w(seed_from_env());
  std::optional<ckpt::AppState> st;
  if (opts.interval) {
    auto o = ckpt::AppState::open();
    if (!o) {
      say(o.error().message);
      return 1;
    }
    st.emplace(std::move(*o));
    if (auto s = w.register_state(*st); !s) {
      say(s.error().message);
      return 1;
    }
    if (opts.restore) restore(*st, w);
  }
  using Clock = std::chrono::steady_clock;
  auto last = Clock::now();
  auto last_dump = Clock::now();
  auto on_interrupt = [&] {
    if (g_dump_requested) dump_self(w);
  };
  for (;;) {
    auto line = read_line(on_interrupt);
    auto v = line ? parse_integer(*line) : std::nullopt;
    if (!v || *v == 0) return w.write_output(opts.out);
    if (*v < 0) return static_cast<int>(*v % 256) == 0 ? 1 : static_cast<int>(*v & 0xff);
    if (*v > kMaxCount)
      say(std::to_string(*v) + " is too large (at most " + std::to_string(kMaxCount) +
          "); ignored");
    else
      w.generate(static_cast<uint32_t>(*v));
    if (st && Clock::now() - last >= std::chrono::seconds(*opts.interval)) {
      if (auto c = st->checkpoint(); !c) say(c.error().message);
      last = Clock::now();
    }
    if (opts.dump_interval &&
        Clock::now() - last_dump >= std::chrono::seconds(*opts.dump_interval)) {
      dump_self(w);
      last_dump = Clock::now();
    }
    if (g_dump_requested) dump_self(w);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  if (!parse_args(argc, argv, &opts)) {
    std::fprintf(stderr,
                 "usage: %s [--checkpoint-interval SECONDS] [--restore] OUT\n"
                 "       %s --images DIR [--dump-interval SECONDS] [--dump-on-sigusr1] OUT\n",
                 argv[0], argv[0]);
    return 2;
  }
  return run(opts);
}
