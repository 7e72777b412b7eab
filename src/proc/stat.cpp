#include "proc/stat.hpp"

#include <array>

#include "proc/proc_file.hpp"

namespace ckpt::proc {

namespace {

constexpr size_t kFirstNumeric = 4;  // ppid; fields 1-3 are pid, comm, state
constexpr size_t kLastField = 52;    // exit_code
constexpr size_t kNumeric = kLastField - kFirstNumeric + 1;

// Fields are printed signed or unsigned; both fit a uint64_t two's-complement value.
std::optional<uint64_t> parse_field(std::string_view tok) {
  if (tok.starts_with('-')) {
    auto v = parse_i64(tok);
    if (!v) return std::nullopt;
    return static_cast<uint64_t>(*v);
  }
  return parse_u64(tok);
}

void assign(ProcStat& s, const std::array<uint64_t, kNumeric>& f) {
  auto at = [&](size_t field) { return f[field - kFirstNumeric]; };
  auto i64 = [&](size_t field) { return static_cast<int64_t>(at(field)); };
  s.ppid = static_cast<pid_t>(i64(4));
  s.pgrp = static_cast<pid_t>(i64(5));
  s.session = static_cast<pid_t>(i64(6));
  s.tty_nr = static_cast<int>(i64(7));
  s.tpgid = static_cast<pid_t>(i64(8));
  s.flags = static_cast<uint32_t>(at(9));
  s.minflt = at(10), s.cminflt = at(11), s.majflt = at(12), s.cmajflt = at(13);
  s.utime = at(14), s.stime = at(15), s.cutime = i64(16), s.cstime = i64(17);
  s.priority = i64(18), s.nice = i64(19), s.num_threads = i64(20);
  s.starttime = at(22), s.vsize = at(23), s.rss = i64(24), s.rsslim = at(25);
  s.start_code = at(26), s.end_code = at(27), s.start_stack = at(28);
  s.kstkesp = at(29), s.kstkeip = at(30);
  s.signal = at(31), s.blocked = at(32), s.sigignore = at(33), s.sigcatch = at(34);
  s.wchan = at(35);
  s.exit_signal = static_cast<int>(i64(38));
  s.processor = static_cast<int>(i64(39));
  s.rt_priority = static_cast<uint32_t>(at(40));
  s.policy = static_cast<uint32_t>(at(41));
  s.delayacct_blkio_ticks = at(42), s.guest_time = at(43), s.cguest_time = i64(44);
  s.start_data = at(45), s.end_data = at(46), s.start_brk = at(47);
  s.arg_start = at(48), s.arg_end = at(49), s.env_start = at(50), s.env_end = at(51);
  s.exit_code = static_cast<int>(i64(52));
}

}  // namespace

Result<ProcStat> parse_stat(std::string_view text) {
  ProcStat s;
  size_t open = text.find(" (");
  size_t close = text.rfind(')');  // comm may itself contain ") "
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return errorf("no '(comm)' field");
  auto pid = parse_i64(text.substr(0, open));
  if (!pid) return errorf("bad pid '{}'", text.substr(0, open));
  s.pid = static_cast<pid_t>(*pid);
  s.comm = std::string(text.substr(open + 2, close - open - 2));
  std::string_view rest = text.substr(close + 1);
  std::string_view state = next_token(rest);
  if (state.size() != 1) return errorf("bad state '{}'", state);
  s.state = state[0];
  std::array<uint64_t, kNumeric> fields{};
  for (size_t i = 0; i < kNumeric; ++i) {
    std::string_view tok = next_token(rest);
    if (tok.empty())
      return errorf("only {} fields, expected {}", kFirstNumeric + i - 1, kLastField);
    auto v = parse_field(tok);
    if (!v) return errorf("field {}: bad number '{}'", kFirstNumeric + i, tok);
    fields[i] = *v;
  }
  assign(s, fields);
  return s;
}

static Result<ProcStat> read_stat_at(pid_t pid, const std::string& rel) {
  CKPT_TRY_ASSIGN(std::string text, read_proc_file(pid, rel));
  auto r = parse_stat(text);
  if (!r) return parse_error(pid, rel, r.error());
  return r;
}

Result<ProcStat> read_stat(pid_t pid) {
  return read_stat_at(pid, "stat");
}

Result<ProcStat> read_thread_stat(pid_t pid, pid_t tid) {
  return read_stat_at(pid, fmt::format("task/{}/stat", tid));
}

}  // namespace ckpt::proc
