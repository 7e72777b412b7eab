// Pseudo-terminals with both ends in the dumped tree (a terminal multiplexer and its shells):
// the master (/dev/ptmx) with the terminal's settings, and each open file of the slave
// (/dev/pts/N). At restore a new pair is made from /dev/ptmx, with the same index when it is
// free, and each slave open file is opened from its master (TIOCGPTPEER), never by path. The
// session whose controlling terminal it was takes it again, in its leader's puppet (TIOCSCTTY),
// with its foreground process group (TIOCSPGRP). A slave whose master is outside the tree (the
// terminal of whoever started the program) is refused as before, pointing at --shell-job.
#include "resources/fds/pty.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <optional>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

constexpr unsigned kPtmxMajor = 5, kPtmxMinor = 2;
constexpr unsigned kSlaveMajorFirst = 136, kSlaveMajorLast = 143;  // UNIX98_PTY_SLAVE_MAJOR
// Opening /dev/ptmx gives the lowest free index: to get the old one back, lower free ones are
// held while trying, up to this many.
constexpr int kMaxIndexTries = 256;
// The kernel's O_LARGEFILE (glibc's is 0 on x86_64): open() always sets it, TIOCGPTPEER only
// when asked, and a program can see it in F_GETFL.
constexpr uint32_t kKernelLargefile = 0100000;
// The line discipline's read buffer holds 4095 bytes (N_TTY_BUF_SIZE - 1): a queue that long
// may have more behind it.
constexpr int kMaxTakenQueue = 4000;
// How many 10 ms waits for room the output written back into a terminal may take.
constexpr int kMaxOutputWaits = 200;

struct Termios {
  uint32_t iflag = 0, oflag = 0, cflag = 0, lflag = 0;
  uint32_t ispeed = 0, ospeed = 0;
  int32_t line = 0;
  schema::Bytes cc;
  template <class V>
  void visit(V& v) {
    v("iflag", iflag), v("oflag", oflag), v("cflag", cflag), v("lflag", lflag);
    v("ispeed", ispeed), v("ospeed", ospeed), v("line", line), v("cc", cc);
  }
};

struct PtyPayload {
  bool master = false;
  int32_t index = 0;  // N of /dev/pts/N at the dump
  // The terminal's state, saved with the master (and copied to its slaves by link()).
  bool locked = false, packet = false;
  std::optional<Termios> termios;
  std::array<uint16_t, 4> winsize{};  // rows, columns, x and y pixels
  int32_t session = 0;                // the session it is the controlling terminal of, or 0
  int32_t fg_pgrp = 0;                // its foreground process group
  // A slave dumped with --shell-job whose master is outside the tree (a terminal, not the
  // caller's, that the program was started on): restored as the restorer's terminal.
  bool shell_job = false, outside = false;
  // What the programs on the terminal wrote and its master's holder had not read yet (a busy
  // pane of a terminal multiplexer), as the master reads it; with the master only.
  schema::Bytes output;
  template <class V>
  void visit(V& v) {
    v("master", master), v("index", index), v("locked", locked), v("packet", packet);
    v("termios", termios), v("winsize", winsize), v("session", session), v("fg_pgrp", fg_pgrp);
    v("shell_job", shell_job), v("outside", outside), v("output", output);
  }
};

bool is_master(const FdProbe& p) {
  return S_ISCHR(p.st.st_mode) && major(p.st.st_rdev) == kPtmxMajor &&
         minor(p.st.st_rdev) == kPtmxMinor;
}

bool is_slave(const FdProbe& p) {
  unsigned maj = major(p.st.st_rdev);
  return S_ISCHR(p.st.st_mode) && maj >= kSlaveMajorFirst && maj <= kSlaveMajorLast;
}

int32_t slave_index(const FdProbe& p) {
  return static_cast<int32_t>((major(p.st.st_rdev) - kSlaveMajorFirst) * 256 + minor(p.st.st_rdev));
}

// With --shell-job the caller's own terminal belongs to the `inherit` kind.
bool callers_terminal(const FdProbe& p) {
  for (int k = 0; k <= 2; ++k) {
    struct stat st;
    if (::isatty(k) && ::fstat(k, &st) == 0 && st.st_rdev == p.st.st_rdev) return true;
  }
  return false;
}

Termios termios_of(const struct termios& t) {
  Termios out{t.c_iflag,         t.c_oflag,         t.c_cflag, t.c_lflag,
              ::cfgetispeed(&t), ::cfgetospeed(&t), t.c_line,  {}};
  out.cc.assign(std::begin(t.c_cc), std::end(t.c_cc));
  return out;
}

struct termios termios_from(const Termios& in) {
  struct termios t {};
  t.c_iflag = in.iflag, t.c_oflag = in.oflag, t.c_cflag = in.cflag, t.c_lflag = in.lflag;
  t.c_line = static_cast<cc_t>(in.line);
  for (size_t i = 0; i < in.cc.size() && i < NCCS; ++i) t.c_cc[i] = in.cc[i];
  ::cfsetispeed(&t, in.ispeed);
  ::cfsetospeed(&t, in.ospeed);
  return t;
}

// Bytes waiting in the terminal cannot be read without taking them from the program: refused.
Status check_empty(const FdProbe& p, int fd, const char* which) {
  int queued = 0;
  if (::ioctl(fd, FIONREAD, &queued) == 0 && queued > 0)
    return errorf(
        "pid {}: fd {} is the pseudo-terminal {} with {} bytes {}, which ckpt cannot save yet",
        p.pid, p.fd, p.link, queued, which);
  return {};
}

// Reads what waits at the master. A non-blocking read of a pty master first waits for the bytes
// still on their way from the slave (the kernel's flip buffer), so EAGAIN means all of it.
// Only while the master's read buffer is not full: then nothing waits behind it in the kernel's
// flip buffers but what was on its way when the tree stopped, and all of it fits back. A full one
// may have tens of kilobytes behind it, which the kernel does not always take back from a single
// writer (measured: 13 of 19 KiB), and bytes taken and not given back would be lost: refused.
Result<schema::Bytes> take_output(const FdProbe& p, int master, const std::string& what) {
  schema::Bytes out;
  int queued = 0;
  if (::ioctl(master, FIONREAD, &queued) < 0 || queued == 0) return out;
  if (queued >= kMaxTakenQueue)
    return errorf(
        "pid {}: fd {} is the pseudo-terminal {} with its read buffer full ({} bytes written by "
        "the "
        "programs on the terminal and not read yet, and maybe more behind), which ckpt cannot "
        "save; dump again once its reader has caught up",
        p.pid, p.fd, p.link, queued);
  int flags = ::fcntl(master, F_GETFL);
  if (flags < 0 || ::fcntl(master, F_SETFL, flags | O_NONBLOCK) < 0)
    return sys_error(what + ": make the master non-blocking");
  char buf[4096];
  ssize_t n;
  while ((n = ::read(master, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) out.insert(out.end(), buf, buf + n);
  int err = errno;
  // The open file description is the program's too: its flags go back before anything else.
  (void)::fcntl(master, F_SETFL, flags);
  if (n < 0 && err != EAGAIN && err != EIO) return sys_error(err, what + ": read the output");
  return out;
}

// Writes all of `bytes` to a terminal fd (non-blocking or not). The bytes reach the other side's
// read buffer through the kernel's flip buffers, which free room as they pass them on: a full one
// is waited for a moment, never for good.
Status write_all(int fd, const schema::Bytes& bytes, const std::string& what) {
  int flags = ::fcntl(fd, F_GETFL);
  bool was_blocking = flags >= 0 && !(flags & O_NONBLOCK);
  if (was_blocking) (void)::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  size_t off = 0;
  int err = 0;
  int waits = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && waits++ < kMaxOutputWaits) {
      pollfd pfd{fd, POLLOUT, 0};
      (void)::poll(&pfd, 1, 10);
      continue;
    }
    if (n <= 0) {
      err = n < 0 ? errno : EAGAIN;
      break;
    }
    off += static_cast<size_t>(n);
  }
  if (was_blocking) (void)::fcntl(fd, F_SETFL, flags);
  if (err != 0)
    return sys_error(err, fmt::format("{} ({} of {} bytes written)", what, off, bytes.size()));
  return {};
}

// A terminal setting changed for a moment through ckpt's own slave, and set back.
class TermiosChange {
 public:
  TermiosChange(int fd, const std::function<void(struct termios&)>& change) : fd_(fd) {
    if (::tcgetattr(fd, &old_) < 0) return;
    struct termios t = old_;
    change(t);
    ok_ = ::tcsetattr(fd, TCSANOW, &t) == 0;
  }
  ~TermiosChange() {
    if (ok_) (void)::tcsetattr(fd_, TCSANOW, &old_);
  }
  bool ok() const { return ok_; }

 private:
  int fd_;
  struct termios old_ {};
  bool ok_ = false;
};

// Packet mode (TIOCPKT) off on a master for a moment: every read then starts with a status byte,
// and a termios change may queue a status packet. Set again at the end, which also clears the
// status, none being pending (check_no_packet_status).
class PacketModeOff {
 public:
  explicit PacketModeOff(int master) : fd_(master) {
    int on = 0;
    if (::ioctl(fd_, TIOCGPKT, &on) == 0 && on) {
      int off = 0;
      was_on_ = ::ioctl(fd_, TIOCPKT, &off) == 0;
    }
  }
  ~PacketModeOff() {
    int on = 1;
    if (was_on_) (void)::ioctl(fd_, TIOCPKT, &on);
  }
  PacketModeOff(const PacketModeOff&) = delete;
  PacketModeOff& operator=(const PacketModeOff&) = delete;

 private:
  int fd_;
  bool was_on_ = false;
};

// In packet mode, a change of the terminal's flow control not read yet waits as a status byte,
// which a peek cannot see without taking it (poll shows it as POLLPRI): refused.
Status check_no_packet_status(const FdProbe& p, int master) {
  pollfd pfd{master, POLLPRI, 0};
  if (::poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLPRI))
    return errorf(
        "pid {}: fd {} is the pseudo-terminal {} in packet mode with a status change (TIOCPKT) "
        "not read yet, which ckpt cannot save",
        p.pid, p.fd, p.link);
  return {};
}

// Writes `bytes` into the terminal from a slave of its own, with output processing off so that
// the master reads them again unchanged (a "\n" would come back as "\r\n" twice processed).
// Used at the dump, where the program goes on (or the dump fails) with its output as it was, and
// at restore on the new pair.
Status write_output(int master, const schema::Bytes& bytes, const std::string& what) {
  if (bytes.empty()) return {};
  PacketModeOff plain(master);
  ScopedFd slave(::ioctl(master, TIOCGPTPEER, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
  if (!slave) return sys_error(what + ": ioctl(TIOCGPTPEER) to write the output back");
  TermiosChange raw(slave.get(),
                    [](struct termios& t) { t.c_oflag &= ~static_cast<tcflag_t>(OPOST); });
  if (!raw.ok()) return sys_error(what + ": tcsetattr to write the output back");
  return write_all(slave.get(), bytes, what + ": write the output back");
}

Status dump_master(FdProbe& p, PtyPayload& out) {
  CKPT_TRY_ASSIGN(int fd, p.borrowed());
  std::string what = fmt::format("pid {}: fd {} ({})", p.pid, p.fd, p.link);
  unsigned index = 0;
  if (::ioctl(fd, TIOCGPTN, &index) < 0) return sys_error(what + ": ioctl(TIOCGPTN)");
  out.index = static_cast<int32_t>(index);
  int flag = 0;
  if (::ioctl(fd, TIOCGPTLCK, &flag) == 0) out.locked = flag != 0;
  if (::ioctl(fd, TIOCGPKT, &flag) == 0) out.packet = flag != 0;
  struct termios t;
  if (::tcgetattr(fd, &t) < 0) return sys_error(what + ": tcgetattr");
  out.termios = termios_of(t);
  struct winsize ws {};
  if (::ioctl(fd, TIOCGWINSZ, &ws) < 0) return sys_error(what + ": ioctl(TIOCGWINSZ)");
  out.winsize = {ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel};
  // Asked through the master, these name the slave's session and foreground group.
  pid_t sid = 0, pgrp = 0;
  if (::ioctl(fd, TIOCGSID, &sid) == 0) out.session = sid;
  if (out.session && ::ioctl(fd, TIOCGPGRP, &pgrp) == 0) out.fg_pgrp = pgrp;
  if (out.packet) CKPT_TRY(check_no_packet_status(p, fd));
  // Taken to be saved and given back at once: the program goes on as it was, the tree being
  // stopped meanwhile (a dumper dying in between loses them). Packet mode is off while they are
  // read, so that the bytes come without status bytes (write_output turns it off itself).
  {
    PacketModeOff plain(fd);
    CKPT_TRY_ASSIGN(out.output, take_output(p, fd, what));
  }
  return write_output(fd, out.output, what);
}

struct Pair {
  const LinkedFile* master = nullptr;
  std::vector<const LinkedFile*> slaves;
};

Status outside_master(const LinkedFile& slave) {
  CKPT_TRY_ASSIGN(PtyPayload p, payload_of<PtyPayload>(*slave.file));
  if (p.shell_job) {
    p.outside = true;
    slave.file->payload = schema::encode(p);
    return {};
  }
  auto [pid, fd] = slave.holders.front();
  return errorf(
      "pid {}: fd {} is the terminal {}; dump with --shell-job to let restore give it the "
      "terminal of its caller",
      pid, fd, slave.file->path);
}

// A controlling terminal comes back only through its session's leader holding a slave of it.
Status check_session(const LinkEnv& env, const Pair& pair, const PtyPayload& m) {
  if (m.session == 0) return {};
  bool in_tree = std::find(env.pids.begin(), env.pids.end(), m.session) != env.pids.end();
  bool held = false;
  for (auto* s : pair.slaves)
    for (auto& h : s->holders) held = held || h.pid == m.session;
  if (in_tree && held) return {};
  auto [pid, fd] = pair.master->holders.front();
  return errorf(
      "pid {}: fd {} is the pseudo-terminal master of /dev/pts/{}, the controlling terminal of "
      "session {}, {}, which ckpt cannot save yet",
      pid, fd, m.index, m.session,
      in_tree ? "whose leader holds no descriptor of it" : "outside the dumped processes");
}

class PtyKind final : public FdKind {
 public:
  std::string_view name() const override { return "pty"; }
  bool claims(FdProbe& p, const DumpFlags& flags) const override {
    if (is_master(p)) return true;
    return is_slave(p) && !(flags.shell_job && callers_terminal(p));
  }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    PtyPayload out;
    out.master = is_master(p);
    out.shell_job = env.flags.shell_job;
    if (out.master) {
      CKPT_TRY(dump_master(p, out));
    } else {
      out.index = slave_index(p);
      CKPT_TRY_ASSIGN(int fd, p.borrowed());
      CKPT_TRY(check_empty(p, fd, "typed into the terminal and not read yet"));
    }
    of.payload = schema::encode(out);
    return {};
  }

  // Pairs each slave with its master; the slaves get the terminal's state (their settle() needs
  // the session and foreground group).
  Status link(const LinkEnv& env, const std::vector<LinkedFile>& files) const override {
    std::map<int32_t, Pair> pairs;
    std::map<int32_t, PtyPayload> masters;
    for (auto& f : files) {
      CKPT_TRY_ASSIGN(PtyPayload p, payload_of<PtyPayload>(*f.file));
      if (p.master) {
        pairs[p.index].master = &f;
        masters[p.index] = p;
      } else {
        pairs[p.index].slaves.push_back(&f);
      }
    }
    for (auto& [index, pair] : pairs) {
      if (!pair.master) {
        for (auto* s : pair.slaves) CKPT_TRY(outside_master(*s));
        continue;
      }
      const PtyPayload& m = masters[index];
      CKPT_TRY(check_session(env, pair, m));
      for (auto* s : pair.slaves) {
        PtyPayload copy = m;
        copy.master = false;
        copy.output.clear();  // queued bytes come back once, through the master
        s->file->payload = schema::encode(copy);
      }
    }
    return {};
  }

  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    std::map<int32_t, int> masters;  // old index -> the new master's fd in `out`
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(PtyPayload p, payload_of<PtyPayload>(*of));
      if (!p.master) continue;
      CKPT_TRY_ASSIGN(ScopedFd fd, open_master(p, of->id));
      CKPT_TRY(set_state(fd.get(), p, of->id));
      CKPT_TRY(set_status_flags(fd.get(), of->flags, "pseudo-terminal master"));
      masters[p.index] = fd.get();
      out[of->id] = std::move(fd);
    }
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(PtyPayload p, payload_of<PtyPayload>(*of));
      if (p.master) continue;
      if (p.outside) {
        CKPT_TRY_ASSIGN(out[of->id], callers_terminal_copy(env, *of));
        continue;
      }
      auto it = masters.find(p.index);
      if (it == masters.end())
        return errorf("open file {} ({}): its pseudo-terminal master is not in the image", of->id,
                      of->path);
      int flags =
          static_cast<int>(of->flags & (O_ACCMODE | kKernelLargefile)) | O_NOCTTY | O_CLOEXEC;
      ScopedFd fd(::ioctl(it->second, TIOCGPTPEER, flags));
      if (!fd) return sys_error(fmt::format("ioctl(TIOCGPTPEER) for open file {}", of->id));
      CKPT_TRY(set_status_flags(fd.get(), of->flags, "pseudo-terminal"));
      out[of->id] = std::move(fd);
    }
    // Locked again only now: a locked master gives no peer. The output waiting at the master
    // goes in first, once the slaves are open (a pair without one reads EIO).
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(PtyPayload p, payload_of<PtyPayload>(*of));
      if (p.master)
        CKPT_TRY(write_output(out[of->id].get(), p.output, fmt::format("open file {}", of->id)));
      int lock = 1;
      if (p.master && p.locked && ::ioctl(out[of->id].get(), TIOCSPTLCK, &lock) < 0)
        return sys_error(fmt::format("ioctl(TIOCSPTLCK) for open file {}", of->id));
    }
    return {};
  }

  // In the session leader's puppet: the terminal becomes its session's controlling terminal
  // again, with its foreground group (every group of the session exists by now: the leader's
  // puppet sets itself up after creating all of its descendants).
  Status settle(const SettleEnv& env, const schema::OpenFile& of, int fd) const override {
    CKPT_TRY_ASSIGN(PtyPayload p, payload_of<PtyPayload>(of));
    if (p.master || p.outside || p.session == 0 || p.session != env.pid) return {};
    if (::ioctl(fd, TIOCSCTTY, 0) < 0)
      return sys_error(
          fmt::format("ioctl(TIOCSCTTY) on fd {} (/dev/pts/{} at the dump)", fd, p.index));
    if (p.fg_pgrp > 0 && ::tcsetpgrp(fd, p.fg_pgrp) < 0)
      return sys_error(fmt::format("tcsetpgrp({}) on fd {}", p.fg_pgrp, fd));
    return {};
  }

 private:
  static Result<ScopedFd> callers_terminal_copy(const RecreateEnv& env,
                                                const schema::OpenFile& of) {
    if (!env.shell_job)
      return make_error("the image was dumped with --shell-job: restore it with --shell-job");
    for (int k = 0; k <= 2; ++k) {
      if (!::isatty(k)) continue;
      ScopedFd copy(::fcntl(k, F_DUPFD_CLOEXEC, 3));
      if (!copy) return sys_error(fmt::format("dup the caller's fd {}", k));
      return copy;
    }
    return errorf("open file {} was the terminal {}; restore it from a terminal", of.id, of.path);
  }

  // A new pair, with the old index when it is free: lower free indexes are taken meanwhile.
  static Result<ScopedFd> open_master(const PtyPayload& p, uint32_t id) {
    std::vector<ScopedFd> held;
    for (int i = 0; i < kMaxIndexTries; ++i) {
      ScopedFd fd(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
      if (!fd) return sys_error(fmt::format("open /dev/ptmx for open file {}", id));
      unsigned index = 0;
      if (::ioctl(fd.get(), TIOCGPTN, &index) < 0) return sys_error("ioctl(TIOCGPTN)");
      if (static_cast<int32_t>(index) >= p.index) return fd;  // the old one, or it is taken
      held.push_back(std::move(fd));
    }
    return ScopedFd(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  }

  // Packet mode last: set before, the termios change would queue a status packet (flow control
  // changed) that the program never had; setting it clears any.
  static Status set_state(int fd, const PtyPayload& p, uint32_t id) {
    int unlock = 0, packet = p.packet ? 1 : 0;
    if (::ioctl(fd, TIOCSPTLCK, &unlock) < 0)
      return sys_error(fmt::format("unlock pseudo-terminal of open file {}", id));
    if (p.termios) {
      struct termios t = termios_from(*p.termios);
      if (::tcsetattr(fd, TCSANOW, &t) < 0)
        return sys_error(fmt::format("tcsetattr for open file {}", id));
    }
    struct winsize ws {
      p.winsize[0], p.winsize[1], p.winsize[2], p.winsize[3]
    };
    if (::ioctl(fd, TIOCSWINSZ, &ws) < 0)
      return sys_error(fmt::format("ioctl(TIOCSWINSZ) for open file {}", id));
    if (::ioctl(fd, TIOCPKT, &packet) < 0)
      return sys_error(fmt::format("ioctl(TIOCPKT) for open file {}", id));
    return {};
  }
};

}  // namespace

Status take_controlling_terminal(const schema::ImageRoot& image, pid_t pid,
                                 const std::function<int(uint32_t id)>& fd_of) {
  for (auto& of : image.open_files) {
    if (of.kind != "pty") continue;
    CKPT_TRY_ASSIGN(PtyPayload p, payload_of<PtyPayload>(of));
    if (p.master || p.outside || p.session != pid) continue;
    int fd = fd_of(of.id);
    if (fd < 0) return errorf("open file {} (/dev/pts/{}) was not handed over", of.id, p.index);
    if (::ioctl(fd, TIOCSCTTY, 0) < 0)
      return sys_error(fmt::format("ioctl(TIOCSCTTY) with /dev/pts/{} at the dump", p.index));
    return {};
  }
  return {};
}

const FdKind& pty_kind() {
  static const PtyKind kind;
  return kind;
}

}  // namespace ckpt::fds
