#pragma once
// Settings a program can observe that are neither memory, files nor signals. Per thread (Linux
// keeps them per thread): nice value, scheduling policy and priority, CPU affinity, timer slack,
// I/O priority, NUMA memory policy, parent-death signal, securebits, capabilities. Per process:
// oom_score_adj, child subreaper, THP disable, and a session leader's autogroup nice value.
//
// What can be read from outside is (sched_getattr, getpriority, sched_getaffinity, ioprio_get,
// /proc/PID/task/TID/status, /proc/PID/oom_score_adj); the rest is asked by each thread itself
// through injected prctl/get_mempolicy calls.
//
// Restore order matters:
//   restore_early       before memory: THP disable (an mm flag, before pages are filled);
//   restore_no_new_privs  once the threads exist, before seccomp;
//   restore_privileges  after seccomp, in each thread: timer slack and memory policy, then ids,
//                       then securebits and capabilities (dropping them last, once nothing
//                       needs them), then the parent-death signal (a change of ids clears it);
//                       then dumpable;
//   restore_scheduling  last before the registers, from outside: affinity, I/O priority, policy,
//                       nice. A thread made SCHED_IDLE or pinned to a busy CPU early would slow
//                       the rest of the restore; a realtime policy also zeroes the timer slack,
//                       which is why the slack is set before.
// A setting that cannot be restored fails the restore naming the setting and the thread.
#include "resources/context.hpp"

namespace ckpt::settings {

// After threads::dump (which fills rec.threads): every setting of every thread and the
// process-wide ones.
Status dump(DumpContext& ctx);

// Refuses an image whose threads hold capabilities the restorer itself lacks: a restore never
// hands a process more than the restoring ckpt has (the kernel would refuse it half-way anyway).
Status check_before_restore(const schema::ProcessRecord& proc);

Status restore_early(RestoreContext& ctx);
// Once the threads exist, before seccomp filters (which need it without CAP_SYS_ADMIN): each
// thread's no_new_privs. It cannot be cleared, so it is set only in the threads that had it.
Status restore_no_new_privs(RestoreContext& ctx);
// In place of a plain credential change: see the order above. Ends with process dumpable.
Status restore_privileges(RestoreContext& ctx);
Status restore_scheduling(RestoreContext& ctx);

}  // namespace ckpt::settings
