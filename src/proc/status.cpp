#include "proc/status.hpp"

#include <functional>
#include <unordered_map>

#include "proc/proc_file.hpp"

namespace ckpt::proc {

namespace {

template <typename T>
Status parse_int(std::string_view v, T& out, int base = 10) {
  auto n = parse_i64(v, base);
  if (!n) return errorf("bad number '{}'", v);
  out = static_cast<T>(*n);
  return {};
}

// "  1234 kB"
Status parse_kb(std::string_view v, uint64_t& out) {
  if (v.ends_with(" kB")) v.remove_suffix(3);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  return parse_int(v, out);
}

Status parse_mask(std::string_view v, uint64_t& out) {
  auto n = parse_u64(v, 16);
  if (!n) return errorf("bad mask '{}'", v);
  out = *n;
  return {};
}

template <typename T>
Status parse_list(std::string_view v, std::vector<T>& out) {
  out.clear();
  for (std::string_view tok = next_token(v); !tok.empty(); tok = next_token(v)) {
    auto n = parse_i64(tok);
    if (!n) return errorf("bad number '{}'", tok);
    out.push_back(static_cast<T>(*n));
  }
  return {};
}

Status parse_ids(std::string_view v, std::array<uint32_t, 4>& out) {
  std::vector<uint32_t> ids;
  CKPT_TRY(parse_list(v, ids));
  if (ids.size() != 4) return errorf("expected 4 ids, got '{}'", v);
  std::copy(ids.begin(), ids.end(), out.begin());
  return {};
}

Status parse_sigq(std::string_view v, ProcStatus& s) {
  size_t slash = v.find('/');
  auto q = parse_u64(v.substr(0, slash));
  auto l = slash == std::string_view::npos ? std::nullopt : parse_u64(v.substr(slash + 1));
  if (!q || !l) return errorf("bad SigQ '{}'", v);
  s.sigq_queued = *q;
  s.sigq_limit = *l;
  return {};
}

using Handler = std::function<Status(std::string_view, ProcStatus&)>;

const std::unordered_map<std::string_view, Handler>& handlers() {
  static const std::unordered_map<std::string_view, Handler> table = {
      {"State",
       [](std::string_view v, ProcStatus& s) -> Status {
         if (v.empty()) return errorf("empty State");
         s.state = v[0];
         return {};
       }},
      {"Tgid", [](auto v, auto& s) { return parse_int(v, s.tgid); }},
      {"Pid", [](auto v, auto& s) { return parse_int(v, s.pid); }},
      {"PPid", [](auto v, auto& s) { return parse_int(v, s.ppid); }},
      {"TracerPid", [](auto v, auto& s) { return parse_int(v, s.tracer_pid); }},
      {"Uid", [](auto v, auto& s) { return parse_ids(v, s.uid); }},
      {"Gid", [](auto v, auto& s) { return parse_ids(v, s.gid); }},
      {"Groups", [](auto v, auto& s) { return parse_list(v, s.groups); }},
      {"NStgid", [](auto v, auto& s) { return parse_list(v, s.ns_tgid); }},
      {"NSpid", [](auto v, auto& s) { return parse_list(v, s.ns_pid); }},
      {"NSpgid", [](auto v, auto& s) { return parse_list(v, s.ns_pgid); }},
      {"NSsid", [](auto v, auto& s) { return parse_list(v, s.ns_sid); }},
      {"Threads", [](auto v, auto& s) { return parse_int(v, s.threads); }},
      {"VmLck", [](auto v, auto& s) { return parse_kb(v, s.vm_lck_kb); }},
      {"RssAnon", [](auto v, auto& s) { return parse_kb(v, s.rss_anon_kb); }},
      {"VmSwap", [](auto v, auto& s) { return parse_kb(v, s.vm_swap_kb); }},
      {"SigQ", [](auto v, auto& s) { return parse_sigq(v, s); }},
      {"SigPnd", [](auto v, auto& s) { return parse_mask(v, s.sig_pnd); }},
      {"ShdPnd", [](auto v, auto& s) { return parse_mask(v, s.shd_pnd); }},
      {"SigBlk", [](auto v, auto& s) { return parse_mask(v, s.sig_blk); }},
      {"SigIgn", [](auto v, auto& s) { return parse_mask(v, s.sig_ign); }},
      {"SigCgt", [](auto v, auto& s) { return parse_mask(v, s.sig_cgt); }},
      {"CapInh", [](auto v, auto& s) { return parse_mask(v, s.cap_inh); }},
      {"CapPrm", [](auto v, auto& s) { return parse_mask(v, s.cap_prm); }},
      {"CapEff", [](auto v, auto& s) { return parse_mask(v, s.cap_eff); }},
      {"CapBnd", [](auto v, auto& s) { return parse_mask(v, s.cap_bnd); }},
      {"CapAmb", [](auto v, auto& s) { return parse_mask(v, s.cap_amb); }},
      {"NoNewPrivs", [](auto v, auto& s) { return parse_int(v, s.no_new_privs); }},
      {"Seccomp", [](auto v, auto& s) { return parse_int(v, s.seccomp); }},
      {"Seccomp_filters", [](auto v, auto& s) { return parse_int(v, s.seccomp_filters); }},
      {"Umask",
       [](std::string_view v, ProcStatus& s) -> Status {
         uint32_t m = 0;
         CKPT_TRY(parse_int(v, m, 8));
         s.umask = m;
         return {};
       }},
      {"Speculation_Store_Bypass",
       [](std::string_view v, ProcStatus& s) -> Status {
         s.speculation_store_bypass = std::string(v);
         return {};
       }},
      {"SpeculationIndirectBranch",
       [](std::string_view v, ProcStatus& s) -> Status {
         s.speculation_indirect_branch = std::string(v);
         return {};
       }},
  };
  return table;
}

}  // namespace

std::string unescape_name(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    char c = s[++i];
    switch (c) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case 'f':
        out += '\f';
        break;
      case 'v':
        out += '\v';
        break;
      case '\\':
        out += '\\';
        break;
      default:
        if (auto o = parse_u64(s.substr(i, 3), 8); o && i + 3 <= s.size() && *o < 256) {
          out += static_cast<char>(*o);
          i += 2;
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

Result<ProcStatus> parse_status(std::string_view text) {
  ProcStatus s;
  std::string_view line;
  for (size_t lineno = 1; next_line(text, line); ++lineno) {
    std::string_view key, value;
    if (!split_key_value(line, key, value)) continue;
    if (key == "Name") {
      // Only the separator tab is removed: a name may start or end with spaces.
      std::string_view raw = line.substr(key.size() + 1);
      if (raw.starts_with('\t')) raw.remove_prefix(1);
      s.name = unescape_name(raw);
      continue;
    }
    auto it = handlers().find(key);
    if (it == handlers().end()) continue;
    Status st = it->second(value, s);
    if (!st) return st.error().wrap(fmt::format("line {} ({})", lineno, key));
  }
  return s;
}

static Result<ProcStatus> read_status_at(pid_t pid, const std::string& rel) {
  CKPT_TRY_ASSIGN(std::string text, read_proc_file(pid, rel));
  auto r = parse_status(text);
  if (!r) return parse_error(pid, rel, r.error());
  return r;
}

Result<ProcStatus> read_status(pid_t pid) {
  return read_status_at(pid, "status");
}

Result<ProcStatus> read_thread_status(pid_t pid, pid_t tid) {
  return read_status_at(pid, fmt::format("task/{}/status", tid));
}

}  // namespace ckpt::proc
