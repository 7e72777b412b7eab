#pragma once
// A signal a thread had already taken off its queue when the dump stopped it (it stopped in a
// signal-delivery stop, and leaving that stop without the signal drops it). signals::hold_taken
// moves the thread on to the job-control stop and keeps the signal here; signals::put_back_taken
// queues it again, siginfo and all, before the queues are read. Whatever fails before that, the
// signal is not lost: this object's end sends it again (with tgkill's siginfo) while the thread
// is still stopped.
#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace ckpt {

class TakenSignal {
 public:
  TakenSignal() = default;
  TakenSignal(pid_t tgid, pid_t tid, std::vector<uint8_t> siginfo)
      : tgid_(tgid), tid_(tid), info_(std::move(siginfo)) {}
  TakenSignal(TakenSignal&& o) noexcept;
  TakenSignal& operator=(TakenSignal&& o) noexcept;
  TakenSignal(const TakenSignal&) = delete;
  TakenSignal& operator=(const TakenSignal&) = delete;
  ~TakenSignal();

  bool empty() const { return info_.empty(); }
  int signo() const;
  const std::vector<uint8_t>& siginfo() const { return info_; }
  // Queued again by the process itself: nothing is left to send.
  void forget() { info_.clear(); }

 private:
  void send_again();
  pid_t tgid_ = 0;
  pid_t tid_ = 0;
  std::vector<uint8_t> info_;  // siginfo_t as PTRACE_GETSIGINFO gave it
};

}  // namespace ckpt
