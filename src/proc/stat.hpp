#pragma once
// /proc/PID/stat and /proc/PID/task/TID/stat, through field 52 (exit_code).
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace ckpt::proc {

struct ProcStat {
  pid_t pid = 0;
  std::string comm;  // raw, may contain spaces and parentheses
  char state = '?';
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  int tty_nr = 0;
  pid_t tpgid = 0;
  uint32_t flags = 0;
  uint64_t minflt = 0, cminflt = 0, majflt = 0, cmajflt = 0;
  uint64_t utime = 0, stime = 0;
  int64_t cutime = 0, cstime = 0;
  int64_t priority = 0, nice = 0;
  int64_t num_threads = 0;
  uint64_t starttime = 0;  // clock ticks after boot: with pid, identifies a process over time
  uint64_t vsize = 0;
  int64_t rss = 0;  // pages
  uint64_t rsslim = 0;
  uint64_t start_code = 0, end_code = 0, start_stack = 0;
  uint64_t kstkesp = 0, kstkeip = 0;
  uint64_t signal = 0, blocked = 0, sigignore = 0, sigcatch = 0;  // obsolete, use status
  uint64_t wchan = 0;
  int exit_signal = 0;
  int processor = 0;
  uint32_t rt_priority = 0;
  uint32_t policy = 0;
  uint64_t delayacct_blkio_ticks = 0;
  uint64_t guest_time = 0;
  int64_t cguest_time = 0;
  uint64_t start_data = 0, end_data = 0, start_brk = 0;
  uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
  int exit_code = 0;
};

Result<ProcStat> parse_stat(std::string_view text);
Result<ProcStat> read_stat(pid_t pid);
Result<ProcStat> read_thread_stat(pid_t pid, pid_t tid);

}  // namespace ckpt::proc
