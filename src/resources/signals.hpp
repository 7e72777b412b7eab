#pragma once
// Signals: handlers with their flags and masks, and the signals queued for the process and for
// each thread. (Each thread's blocked mask is saved with the thread.)
#include "resources/context.hpp"

namespace ckpt::signals {

Status dump(DumpContext& ctx);
// Reads the process's shared queue of pending signals again, into the record dump() filled: for
// a timer found to have fired (its signal queued) since, the process being frozen but not its
// timers (timers.cpp).
Status reread_shared_pending(DumpContext& ctx);
// The signal number of a siginfo as the kernel hands it out (0 if too short to hold one).
int siginfo_signo(const uint8_t* info, size_t size);
// For a thread just stopped by the dump: if it stopped holding a signal it had taken off its
// queue (`stop` a signal-delivery stop), moves it on to the job-control stop and keeps the signal
// in h.taken (resources/taken_signal.hpp).
Status hold_taken(ThreadHandle& h, pid_t pid, const ptrace::StopInfo& stop);
// Queues every signal held by hold_taken again, through the process's main thread (only a process
// itself may queue a siginfo as kill() made it), where the thread had it.
Status put_back_taken(DumpContext& ctx);
// Run natively in the puppet: it is a copy of the restorer, whose handlers (a supervisor's, a
// program calling ckpt_restore_child, a sanitizer's) point into code the image replaces. Every
// signal goes back to its default; restore() then installs the image's own handlers.
Status reset_in_puppet();
// Installs the handlers and queues the pending signals again, all while the threads block every
// signal, so that nothing is delivered before the process runs.
Status restore(RestoreContext& ctx);

}  // namespace ckpt::signals
