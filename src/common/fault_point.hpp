#pragma once
// Deterministic kill points for the fault-injection tests (tests/reliability, docs/reliability.md).
//
// The moments at which ckpt could die and leave something half done (before and after each
// ptrace request, while memory streams into the image) call fault::point(). Normally that is one
// load and a branch. Two environment variables, read once per process, make it useful to a test:
//   CKPT_FAULT_KILL_AT=N   the process SIGKILLs itself at its Nth point (1-based), as if killed
//                          from outside at exactly that moment;
//   CKPT_FAULT_KILL_PID=P  with CKPT_FAULT_KILL_AT: process P is killed there instead (the target
//                          of a dump dying at that moment);
//   CKPT_FAULT_SIGNAL=S    with CKPT_FAULT_KILL_AT: signal S is sent there instead of SIGKILL (a
//                          signal reaching the target at exactly that moment); 0 sends none, so
//                          that with CKPT_FAULT_WAIT_MS the point only holds the process there;
//   CKPT_FAULT_WAIT_MS=N   with CKPT_FAULT_SIGNAL: the point then waits N ms (the target gets to
//                          act on the signal before ckpt's next step);
//   CKPT_FAULT_SENT=FILE   with CKPT_FAULT_KILL_AT: the kill point writes "sent" or the errno text
//                          there (a process that did not exist yet got no signal);
//   CKPT_FAULT_COUNT=FILE  every point appends "N PID WHAT DETAIL" to FILE, so that a test learns
//                          how many points a complete run has and what each one is.
//   CKPT_FAULT_SLOW_STEP_US=N  every single step of a thread (PTRACE_SINGLESTEP) waits N us
//                          first: a tracer slower than the kernel's clock updates, which no
//                          clock read in the vdso outlasts when stepped (docs/reliability.md).
// A forked child (the dumper) counts from where its parent stood; the parent of a dump makes no
// ptrace requests, so the dumper's count starts at 1.
namespace ckpt::fault {

// `what` and `detail` name the moment ("before" "PTRACE_SYSCALL").
void point(const char* what, const char* detail = "");

// Before each single step: waits as long as CKPT_FAULT_SLOW_STEP_US says (normally nothing).
void before_step();

}  // namespace ckpt::fault
