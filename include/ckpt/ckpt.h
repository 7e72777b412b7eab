#ifndef CKPT_CKPT_H
#define CKPT_CKPT_H
/* Public C API of libckpt. Usable from C11 and C++.
 *
 * Sections:
 *   - Application-level state checkpoints (ckpt_state_*): a program saves and restores its own
 *     registered state in checkpoint.<unix-time>.dat files.
 *   - Whole-process checkpoints from inside (ckpt_init_opts, ckpt_set_*, ckpt_dump,
 *     ckpt_restore_child, ckpt_last_error): the transparent engine called like libcriu.
 * Every function of a section starts with the section's prefix.
 */
#include <stddef.h>

#include "ckpt/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===========================================================================================
 * Application-level state checkpoints: ckpt_state_*
 *
 * A program registers the state it needs to continue (byte ranges and/or serialize/deserialize
 * callbacks, each under a unique name), then calls ckpt_state_checkpoint() whenever it wants a
 * checkpoint and ckpt_state_restore() after a crash. Each checkpoint is a new file
 * "checkpoint.<unix-seconds>.dat" (then "checkpoint.<unix-seconds>.<n>.dat" for the n-th
 * further one in the same second) in the configured directory, written atomically (temporary
 * file, fsync, rename) with mode 0600 and protected by an XXH3-64 checksum. The format and the
 * ordering rule are described in docs/app-checkpoints.md.
 *
 * A handle is not thread-safe: use it from one thread at a time. One handle (one process) should
 * write to a given directory at a time.
 * =========================================================================================== */

/* Opaque handle: the registered items and the options. */
typedef struct ckpt_state ckpt_state;

/* Output buffer handed to a serializer; append bytes with ckpt_state_buffer_append(). */
typedef struct ckpt_state_buffer ckpt_state_buffer;

/* Serializer: appends the item's bytes to `out`. Returns 0 on success, -1 on failure (the
 * checkpoint is then not written). */
typedef int (*ckpt_state_save_fn)(void* user, ckpt_state_buffer* out);

/* Deserializer: loads the item from `len` bytes at `data` (the bytes its serializer produced).
 * Returns 0 on success, -1 if the bytes are unacceptable (the file is then treated as invalid
 * and the next older checkpoint is tried). It should leave the program's state unchanged when
 * it returns -1. */
typedef int (*ckpt_state_load_fn)(void* user, const void* data, size_t len);

typedef struct ckpt_state_options {
  /* Directory of the checkpoint files; NULL or "" = the current directory at the time of
   * ckpt_state_open(). Created (mode 0700) by the first checkpoint if missing. */
  const char* dir;
  /* After each checkpoint, keep only the `keep` newest checkpoint files; 0 = keep all. */
  unsigned keep;
  /* Nonzero: ckpt_state_open() removes every existing checkpoint file (and temporary files
   * left by an interrupted checkpoint) from the directory, for a program that starts afresh. */
  int clean_at_start;
} ckpt_state_options;

/* Fills `opts` with the defaults: current directory, keep all, no cleaning. */
CKPT_API void ckpt_state_options_init(ckpt_state_options* opts);

/* Creates a handle. `opts` may be NULL (defaults); the options are copied.
 * Returns NULL and sets errno on failure: ENOMEM; the errno of getcwd(); or, with
 * clean_at_start, the errno of listing the directory or removing a file. */
CKPT_API ckpt_state* ckpt_state_open(const ckpt_state_options* opts);

/* Frees the handle. Checkpoint files are left alone. NULL is accepted. */
CKPT_API void ckpt_state_close(ckpt_state* st);

/* Registers `len` bytes at `addr` under `name` (a non-empty string of at most 255 bytes).
 * checkpoint() copies the bytes; restore() overwrites them, and accepts a file only if it holds
 * exactly `len` bytes for this name. The memory must stay valid while the handle is used.
 * Returns 0, or -1 with errno EINVAL (bad name, NULL addr with len > 0) or EEXIST (name taken). */
CKPT_API int ckpt_state_add_range(ckpt_state* st, const char* name, void* addr, size_t len);

/* Registers a serializer/deserializer pair under `name`, for state that is not one fixed-size
 * byte range (containers, pointers). `user` is passed to both. Returns 0, or -1 with errno
 * EINVAL (bad name, NULL function) or EEXIST (name taken). */
CKPT_API int ckpt_state_add_fns(ckpt_state* st, const char* name, ckpt_state_save_fn save,
                                ckpt_state_load_fn load, void* user);

/* For serializers: appends `len` bytes. Returns 0, or -1 with errno ENOMEM or EINVAL. */
CKPT_API int ckpt_state_buffer_append(ckpt_state_buffer* buf, const void* data, size_t len);

/* Writes a new checkpoint file holding every registered item, then applies `keep`.
 * Returns 0 on success (ckpt_state_path() names the new file), or -1 with errno set and a
 * message in ckpt_state_error(): the errno of the failing system call (EACCES, ENOSPC, ENOTDIR,
 * ...), or ECANCELED when a serializer failed. Failing to remove old files for `keep` does not
 * fail the checkpoint. */
CKPT_API int ckpt_state_checkpoint(ckpt_state* st);

/* Loads the newest valid checkpoint into the registered items. Files are tried newest first;
 * a file that cannot be read, is truncated, has a wrong magic or format version, a checksum
 * mismatch, or does not hold exactly the registered items (names and byte-range sizes), or whose
 * bytes a deserializer rejects, is skipped with a one-line message (ckpt_state_skipped()).
 * Nothing is changed by a file that fails before the deserializers run.
 * Returns 1 when a checkpoint was loaded (ckpt_state_path() names it), 0 when there was no valid
 * one (a missing directory counts as empty), -1 with errno and ckpt_state_error() when the
 * directory cannot be listed. */
CKPT_API int ckpt_state_restore(ckpt_state* st);

/* Removes every checkpoint file (and leftover temporary file) from the directory.
 * Returns the number of files removed, or -1 with errno and ckpt_state_error(). */
CKPT_API int ckpt_state_clean(ckpt_state* st);

/* The file written by the last successful checkpoint or loaded by the last successful restore;
 * "" before either. Valid until the next call on the handle. */
CKPT_API const char* ckpt_state_path(const ckpt_state* st);

/* Messages of the files the last restore skipped, newest first, e.g.
 * "checkpoint.1700000000.dat: checksum mismatch (corrupt or truncated file)".
 * ckpt_state_skipped() returns NULL for i >= ckpt_state_skipped_count(). */
CKPT_API size_t ckpt_state_skipped_count(const ckpt_state* st);
CKPT_API const char* ckpt_state_skipped(const ckpt_state* st, size_t i);

/* A one-line description of the last failure on the handle; "" if none. */
CKPT_API const char* ckpt_state_error(const ckpt_state* st);

/* The directory used, as an absolute path. */
CKPT_API const char* ckpt_state_dir(const ckpt_state* st);

/* ===========================================================================================
 * Whole-process checkpoints from inside: ckpt_init_opts, ckpt_set_*, ckpt_dump,
 * ckpt_restore_child, ckpt_last_error
 *
 * The same transparent engine as `ckpt dump` / `ckpt restore`, called from the program itself,
 * one to one with libcriu (criu_init_opts -> ckpt_init_opts, criu_dump -> ckpt_dump, ...).
 * No daemon or service is needed: ckpt_dump() forks a helper that checkpoints its parent.
 * Works from multi-threaded programs. Needs the privileges of the engine (root, or
 * CAP_CHECKPOINT_RESTORE + CAP_SYS_PTRACE). docs/inprocess-api.md has the details and limits.
 *
 * The options are one set per process (like libcriu's): the ckpt_set_* calls and ckpt_dump()
 * may come from any thread; they are serialized by a mutex. ckpt_dump() copies the options when
 * it starts.
 * =========================================================================================== */

/* Resets the options to their defaults: no images directory, shell_job off, leave_running off
 * (the dumped process is killed after a successful dump, as with libcriu). Returns 0. */
CKPT_API int ckpt_init_opts(void);

/* The directory of the checkpoint images (a store, see docs/image-format.md); created if
 * missing. A relative path is taken relative to the current directory at the time of this call.
 * Returns 0, or -EINVAL for NULL/"" and -ENOMEM. */
CKPT_API int ckpt_set_images_dir(const char* path);

/* The same, as an open directory descriptor. The descriptor must stay open while it is used;
 * ckpt does not close it. Returns 0, or -EBADF for a negative fd. */
CKPT_API int ckpt_set_images_dir_fd(int fd);

/* Nonzero: the process may have a terminal or pipes to processes outside it on fds 0-2 (a
 * program started from a shell or a pipeline); at restore it gets the restorer's fds 0-2 and
 * terminal instead. Mirrors criu_set_shell_job. */
CKPT_API void ckpt_set_shell_job(int shell_job);

/* Nonzero: the process goes on after ckpt_dump(). Zero (the default, like libcriu): after a
 * successful dump the process kills itself with SIGKILL, so ckpt_dump() does not return 0 then
 * (it still returns 1 in the restored copy, and a negative errno on failure, when nothing is
 * killed). Mirrors criu_set_leave_running. */
CKPT_API void ckpt_set_leave_running(int leave_running);

/* Checkpoints the calling process: all its threads, its memory, fds, signal state, etc., into a
 * new generation in the images directory. The calling thread waits until the image is read;
 * the other threads are stopped only while the engine reads them.
 * Returns 0 in the process that goes on after the dump; 1 in a copy later restored from this
 * checkpoint (ckpt_dump() returns a second time there); a negative errno on failure, with a
 * message in ckpt_last_error() (-EINVAL: no images directory; other values: the errno of the
 * failing step, or -EIO when it has none, e.g. a resource the engine cannot checkpoint; the
 * process is then left running as before). The process must have no child processes of its own
 * (the engine does not checkpoint process trees); the helper ckpt forks is not counted. */
CKPT_API int ckpt_dump(void);

/* Restores the newest valid checkpoint of the images directory as a child of the caller, with
 * its original PID and TIDs (they must be free: reap the dumped process first), and lets it run.
 * Returns its PID (reap it with waitpid as any child), or a negative errno with a message in
 * ckpt_last_error() (-EINVAL: no images directory; -ENOENT: it holds no valid checkpoint;
 * the errno of the failing step otherwise, -EIO when it has none, e.g. the PID is taken).
 * Nothing is left behind on failure. Uses the shell_job option. */
CKPT_API int ckpt_restore_child(void);

/* A one-line description of the last failure of ckpt_dump()/ckpt_restore_child() in the
 * calling thread; "" if none. Valid until the thread's next call of either. */
CKPT_API const char* ckpt_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* CKPT_CKPT_H */
