// Parsers of /proc text fed with fixed strings, including the odd cases real systems produce.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "proc/fdinfo.hpp"
#include "proc/maps.hpp"
#include "proc/misc.hpp"
#include "proc/mountinfo.hpp"
#include "proc/stat.hpp"
#include "proc/status.hpp"
#include "proc/task.hpp"

namespace ckpt::proc {
namespace {

TEST(ProcMountinfo, ParsesMountsWithEscapedPointsAndOptionalFields) {
  auto m = parse_mountinfo(
      "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
      "36 26 0:22 /sub /mnt/my\\040disk rw,noatime shared:1 master:2 - tmpfs tmpfs rw\n");
  ASSERT_TRUE(m) << m.error().message;
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ((*m)[0].id, 26);
  EXPECT_EQ((*m)[0].major, 254u);
  EXPECT_EQ((*m)[0].minor, 0u);
  EXPECT_EQ((*m)[0].mount_point, "/");
  EXPECT_EQ((*m)[1].root, "/sub");
  EXPECT_EQ((*m)[1].mount_point, "/mnt/my disk");
  EXPECT_EQ((*m)[1].minor, 22u);
}

TEST(ProcMountinfo, RejectsAMalformedLineNamingIt) {
  auto m = parse_mountinfo("26 1 254:0 / / rw - ext4 /dev/vda rw\n27 1 nodev\n");
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("line 2"), std::string::npos) << m.error().message;
}

TEST(ProcMountinfo, SplitsTheKernelsDeviceNumbers) {
  // fdinfo's sdev: 12 bits of major above 20 of minor (fe00000 is 254:0).
  EXPECT_EQ(kernel_dev_major(0xfe00000), 254u);
  EXPECT_EQ(kernel_dev_minor(0xfe00000), 0u);
  EXPECT_EQ(kernel_dev_major(0x1a), 0u);
  EXPECT_EQ(kernel_dev_minor(0x1a), 26u);
}

TEST(ProcMaps, ParsesFileMappingWithSpacesAndDeletedSuffix) {
  auto e = parse_maps_line(
      "7f1c2a000000-7f1c2a021000 r-xs 0001f000 fd:01 1312345                    "
      "/tmp/my dir/lib x.so (deleted)");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->start, 0x7f1c2a000000u);
  EXPECT_EQ(e->end, 0x7f1c2a021000u);
  EXPECT_EQ(e->prot, PROT_READ | PROT_EXEC);
  EXPECT_TRUE(e->shared);
  EXPECT_EQ(e->offset, 0x1f000u);
  EXPECT_EQ(e->dev_major, 0xfdu);
  EXPECT_EQ(e->dev_minor, 1u);
  EXPECT_EQ(e->inode, 1312345u);
  EXPECT_EQ(e->path, "/tmp/my dir/lib x.so");
  EXPECT_TRUE(e->deleted);
  EXPECT_EQ(e->kind, MapKind::file);
}

TEST(ProcMaps, ClassifiesSpecialMappings) {
  const std::string text =
      "55d000000000-55d000021000 rw-p 00000000 00:00 0                          [heap]\n"
      "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n"
      "7ffd10000000-7ffd10002000 r-xp 00000000 00:00 0                          [vdso]\n"
      "7ffd10002000-7ffd10004000 r--p 00000000 00:00 0                          [vvar]\n"
      "7ffd10004000-7ffd10005000 r--p 00000000 00:00 0                          [vvar_vclock]\n"
      "7f0000000000-7f0000001000 rw-p 00000000 00:00 0                          [anon:my buf]\n"
      "7f0000001000-7f0000002000 rw-s 00000000 00:01 77                         [anon_shmem:x]\n"
      "7f0000002000-7f0000003000 rw-p 00000000 00:00 0 \n"
      "7f0000003000-7f0000004000 rw-s 00000000 00:01 1027                       /dev/zero "
      "(deleted)\n"
      "7f0000004000-7f0000005000 r-xp 00000000 00:00 0                          [uprobes]\n"
      "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";
  auto maps = parse_maps(text);
  ASSERT_TRUE(maps.ok()) << maps.error().message;
  ASSERT_EQ(maps->size(), 11u);
  const MapKind want[] = {MapKind::heap,       MapKind::stack,       MapKind::vdso,
                          MapKind::vvar,       MapKind::vvar_vclock, MapKind::anon_named,
                          MapKind::anon_named, MapKind::anonymous,   MapKind::file,
                          MapKind::special,    MapKind::vsyscall};
  for (size_t i = 0; i < maps->size(); ++i)
    EXPECT_EQ((*maps)[i].kind, want[i]) << i << ": " << (*maps)[i].path;
  EXPECT_EQ((*maps)[5].path, "[anon:my buf]");
  EXPECT_EQ((*maps)[7].path, "");
  EXPECT_EQ((*maps)[8].path, "/dev/zero");
  EXPECT_TRUE((*maps)[8].deleted);
  EXPECT_EQ((*maps)[10].end, 0xffffffffff601000u);
  EXPECT_EQ((*maps)[10].prot, PROT_EXEC);
}

TEST(ProcMaps, KeepsVeryLongPaths) {
  std::string path = "/" + std::string(4000, 'a') + "/b c";
  auto maps = parse_maps("1000-2000 rw-p 00000000 08:01 5 " + path + "\n");
  ASSERT_TRUE(maps.ok());
  EXPECT_EQ(maps->at(0).path, path);
}

TEST(ProcMaps, RejectsMalformedLinesNamingTheLine) {
  auto r = parse_maps("1000-2000 rw-p 00000000 08:01 5 /x\nzz-2000 rw-p 0 08:01 5\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "line 2: bad address range 'zz-2000'");
  EXPECT_FALSE(parse_maps("2000-1000 rw-p 0 08:01 5\n").ok());
  EXPECT_FALSE(parse_maps("1000-2000 rwzp 0 08:01 5\n").ok());
  EXPECT_FALSE(parse_maps("1000-2000 rw-p 0 0801 5\n").ok());
  EXPECT_FALSE(parse_maps("1000-2000 rw-p 0 08:01\n").ok());
}

TEST(ProcMaps, SmapsAddsVmFlagsAndCounters) {
  const std::string text =
      "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
      "Size:               1024 kB\n"
      "Rss:                 512 kB\n"
      "Anonymous:           508 kB\n"
      "Swap:                  4 kB\n"
      "THPeligible:    0\n"
      "VmFlags: rd wr mr mw me gd ac sd lo dd wf um uw mt zz\n"
      "7f0000100000-7f0000101000 r--p 00000000 08:01 9 /lib/a.so\n"
      "Rss:                   4 kB\n"
      "VmFlags: rd mr mw me dc\n";
  auto maps = parse_maps(text);
  ASSERT_TRUE(maps.ok()) << maps.error().message;
  ASSERT_EQ(maps->size(), 2u);
  const MapEntry& a = (*maps)[0];
  EXPECT_EQ(a.rss_kb, 512u);
  EXPECT_EQ(a.anonymous_kb, 508u);
  EXPECT_EQ(a.swap_kb, 4u);
  ASSERT_TRUE(a.vm_flags.has_value());
  for (VmFlag f : {VmFlag::rd, VmFlag::wr, VmFlag::gd, VmFlag::sd, VmFlag::lo, VmFlag::dd,
                   VmFlag::wf, VmFlag::um, VmFlag::uw, VmFlag::mt, VmFlag::ac})
    EXPECT_TRUE(a.vm_flags->has(f)) << VmFlags::code(f);
  EXPECT_FALSE(a.vm_flags->has(VmFlag::ex));
  EXPECT_FALSE(a.vm_flags->has(VmFlag::dc));
  EXPECT_EQ(a.vm_flags->unknown, std::vector<std::string>{"zz"});
  EXPECT_TRUE((*maps)[1].vm_flags->has(VmFlag::dc));
  EXPECT_FALSE((*maps)[1].vm_flags->has(VmFlag::wr));
}

TEST(ProcStatus, ParsesIdsMasksAndNamespaces) {
  const std::string text =
      "Name:\tmy (prog) \\n\n"
      "Umask:\t0022\n"
      "State:\tS (sleeping)\n"
      "Tgid:\t4242\n"
      "Ngid:\t0\n"
      "Pid:\t4243\n"
      "PPid:\t1\n"
      "TracerPid:\t77\n"
      "Uid:\t1000\t1001\t1002\t1003\n"
      "Gid:\t2000\t2001\t2002\t2003\n"
      "FDSize:\t64\n"
      "Groups:\t4 24 27 \n"
      "NStgid:\t4242\t12\n"
      "NSpid:\t4243\t13\n"
      "Threads:\t3\n"
      "SigQ:\t2/63413\n"
      "SigPnd:\t0000000000000100\n"
      "ShdPnd:\t0000000000004000\n"
      "SigBlk:\tfffffffe7ffbfeff\n"
      "SigIgn:\t0000000000001000\n"
      "SigCgt:\t0000000180004a02\n"
      "CapInh:\t0000000000000000\n"
      "CapPrm:\t000001ffffffffff\n"
      "CapEff:\t000001ffffffffff\n"
      "CapBnd:\t000001ffffffffff\n"
      "CapAmb:\t0000000000000001\n"
      "NoNewPrivs:\t1\n"
      "Seccomp:\t2\n"
      "Seccomp_filters:\t3\n"
      "Speculation_Store_Bypass:\tthread vulnerable\n"
      "SomethingNew:\twhatever\n";
  auto s = parse_status(text);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->name, "my (prog) \n");
  EXPECT_EQ(s->umask, 0022u);
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->tgid, 4242);
  EXPECT_EQ(s->pid, 4243);
  EXPECT_EQ(s->ppid, 1);
  EXPECT_EQ(s->tracer_pid, 77);
  EXPECT_EQ(s->uid, (std::array<uint32_t, 4>{1000, 1001, 1002, 1003}));
  EXPECT_EQ(s->gid[3], 2003u);
  EXPECT_EQ(s->groups, (std::vector<uint32_t>{4, 24, 27}));
  EXPECT_EQ(s->ns_tgid, (std::vector<pid_t>{4242, 12}));
  EXPECT_EQ(s->ns_pid, (std::vector<pid_t>{4243, 13}));
  EXPECT_EQ(s->threads, 3);
  EXPECT_EQ(s->sigq_queued, 2u);
  EXPECT_EQ(s->sigq_limit, 63413u);
  EXPECT_EQ(s->sig_pnd, 0x100u);
  EXPECT_EQ(s->shd_pnd, 0x4000u);
  EXPECT_EQ(s->sig_blk, 0xfffffffe7ffbfeffu);
  EXPECT_EQ(s->sig_ign, 0x1000u);
  EXPECT_EQ(s->sig_cgt, 0x180004a02u);
  EXPECT_EQ(s->cap_prm, 0x1ffffffffffu);
  EXPECT_EQ(s->cap_amb, 1u);
  EXPECT_EQ(s->no_new_privs, 1);
  EXPECT_EQ(s->seccomp, 2);
  EXPECT_EQ(s->seccomp_filters, 3);
  EXPECT_EQ(s->speculation_store_bypass, "thread vulnerable");
}

TEST(ProcStatus, ReportsTheBadKey) {
  auto s = parse_status("Name:\tx\nUid:\t1 2 3\n");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, "line 2 (Uid): expected 4 ids, got '1 2 3'");
  EXPECT_FALSE(parse_status("SigBlk:\txyz\n").ok());
}

std::string stat_line(const std::string& comm) {
  // Fields 4..52 as a real kernel prints them (ppid=1, starttime=123456, exit_code=0).
  return "4242 (" + comm +
         ") S 1 4242 4242 34816 4242 4194560 100 0 0 0 5 3 0 0 20 0 2 0 123456 "
         "18446744073709551615 300 18446744073709551615 94000000000000 94000000100000 "
         "140730000000000 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94000000200000 94000000300000 "
         "94000001000000 140730000001000 140730000001100 140730000001100 140730000001200 256\n";
}

TEST(ProcStat, ParsesCommWithSpacesAndParentheses) {
  auto s = parse_stat(stat_line("a) b (c) d"));
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->pid, 4242);
  EXPECT_EQ(s->comm, "a) b (c) d");
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->ppid, 1);
  EXPECT_EQ(s->tty_nr, 34816);
  EXPECT_EQ(s->flags, 4194560u);
  EXPECT_EQ(s->num_threads, 2);
  EXPECT_EQ(s->starttime, 123456u);
  EXPECT_EQ(s->vsize, 18446744073709551615u);
  EXPECT_EQ(s->rss, 300);
  EXPECT_EQ(s->start_code, 94000000000000u);
  EXPECT_EQ(s->end_code, 94000000100000u);
  EXPECT_EQ(s->start_stack, 140730000000000u);
  EXPECT_EQ(s->exit_signal, 17);
  EXPECT_EQ(s->start_data, 94000000200000u);
  EXPECT_EQ(s->end_data, 94000000300000u);
  EXPECT_EQ(s->start_brk, 94000001000000u);
  EXPECT_EQ(s->arg_start, 140730000001000u);
  EXPECT_EQ(s->arg_end, 140730000001100u);
  EXPECT_EQ(s->env_start, 140730000001100u);
  EXPECT_EQ(s->env_end, 140730000001200u);
  EXPECT_EQ(s->exit_code, 256);
}

TEST(ProcStat, RejectsTruncatedLines) {
  std::string line = stat_line("x");
  line.resize(line.rfind(' '));  // drop exit_code
  auto s = parse_stat(line);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, "only 51 fields, expected 52");
  EXPECT_FALSE(parse_stat("4242 x S 1").ok());
}

TEST(ProcTask, ParsesChildrenLists) {
  EXPECT_EQ(*parse_pid_list("12 13 400 "), (std::vector<pid_t>{12, 13, 400}));
  EXPECT_TRUE(parse_pid_list("")->empty());
  EXPECT_FALSE(parse_pid_list("12 x").ok());
}

TEST(ProcFdinfo, ParsesEventfdAndLocks) {
  auto i = parse_fdinfo(
      "pos:\t0\nflags:\t02004002\nmnt_id:\t15\nino:\t1057\neventfd-count:               2a\n"
      "eventfd-id: 7\neventfd-semaphore: 1\nlock:\t1: FLOCK  ADVISORY  WRITE 99 00:0f:1057 0 "
      "EOF\n");
  ASSERT_TRUE(i.ok()) << i.error().message;
  EXPECT_EQ(i->flags, 02004002u);
  EXPECT_EQ(i->mnt_id, 15);
  EXPECT_EQ(i->ino, 1057u);
  EXPECT_EQ(i->eventfd_count, 0x2au);
  EXPECT_EQ(i->eventfd_id, 7u);
  EXPECT_EQ(i->eventfd_semaphore, true);
  ASSERT_EQ(i->lock_lines.size(), 1u);
  auto l = parse_lock_line(i->lock_lines[0]);
  ASSERT_TRUE(l.ok()) << l.error().message;
  EXPECT_EQ(l->kind, "FLOCK");
  EXPECT_EQ(l->pid, 99);
  EXPECT_EQ(l->inode, 1057u);
  EXPECT_FALSE(l->end.has_value());
}

TEST(ProcFdinfo, ParsesThePidAPidfdNames) {
  auto live = parse_fdinfo(
      "pos:\t0\nflags:\t02004002\nmnt_id:\t4\nino:\t9\nPid:\t4242\n"
      "NSpid:\t4242\t1\n");
  ASSERT_TRUE(live.ok()) << live.error().message;
  EXPECT_EQ(live->pidfd_pid, 4242);
  EXPECT_EQ(parse_fdinfo("pos:\t0\nPid:\t-1\nNSpid:\t-1\n")->pidfd_pid, -1);
  EXPECT_EQ(parse_fdinfo("pos:\t0\nflags:\t02\n")->pidfd_pid, std::nullopt);
  EXPECT_FALSE(parse_fdinfo("Pid:\t-2\n").ok());
  EXPECT_FALSE(parse_fdinfo("Pid:\tx\n").ok());
}

TEST(ProcFdinfo, TellsAUserfaultfdsFeaturesAndFindsOneWithForkEventsOpenHere) {
  auto i = parse_fdinfo(
      "pos:\t0\nflags:\t02004000\nmnt_id:\t17\nino:\t5496623\npending:\t0\ntotal:\t0\n"
      "API:\taa:8000a000:80000000000001ff\n");
  ASSERT_TRUE(i.ok()) << i.error().message;
  EXPECT_EQ(userfaultfd_features(*i), 0x8000a000u);
  EXPECT_EQ(userfaultfd_features(*parse_fdinfo("pos:\t0\nflags:\t02\n")), std::nullopt);
  EXPECT_EQ(userfaultfd_features(*parse_fdinfo("API:\taa\n")), std::nullopt);

  // No userfaultfd can have a feature the kernel does not define; one opened here is found.
  constexpr uint64_t kUndefined = uint64_t{1} << 62;
  auto none = some_userfaultfd_has(kUndefined);
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_FALSE(*none);
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC));
  ASSERT_GE(fd, 0) << std::strerror(errno);
  uffdio_api api{UFFD_API, UFFD_FEATURE_EVENT_FORK, 0};
  ASSERT_EQ(::ioctl(fd, UFFDIO_API, &api), 0) << std::strerror(errno);
  auto found = some_userfaultfd_has(UFFD_FEATURE_EVENT_FORK);
  ::close(fd);
  ASSERT_TRUE(found.ok()) << found.error().message;
  EXPECT_TRUE(*found);
}

TEST(ProcFdinfo, ParsesEpollSignalfdTimerfdAndKeepsUnknownLines) {
  auto i = parse_fdinfo(
      "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\n"
      "tfd:        5 events:       19 data:         deadbeef  pos:0 ino:61af sdev:7\n"
      "tfd:       12 events:        1 data:                0  pos:3 ino:1 sdev:f\n"
      "sigmask:\t0000000000004002\n"
      "clockid: 1\nticks: 3\nsettime flags: 01\nit_value: (0, 49406829)\nit_interval: (1, 0)\n"
      "inotify wd:3 ino:9e7e sdev:800013 mask:800afce ignored_mask:0 fhandle-bytes:8\n"
      "fanotify flags:10 event-flags:0\n"
      "tty-index:\t3\n");
  ASSERT_TRUE(i.ok()) << i.error().message;
  ASSERT_EQ(i->epoll_targets.size(), 2u);
  EXPECT_EQ(i->epoll_targets[0].tfd, 5);
  EXPECT_EQ(i->epoll_targets[0].events, 0x19u);
  EXPECT_EQ(i->epoll_targets[0].data, 0xdeadbeefu);
  EXPECT_EQ(i->epoll_targets[0].ino, 0x61afu);
  EXPECT_EQ(i->epoll_targets[1].pos, 3u);
  EXPECT_EQ(i->epoll_targets[1].sdev, 0xfu);
  EXPECT_EQ(i->sigmask, 0x4002u);
  EXPECT_EQ(i->timer_clockid, 1);
  EXPECT_EQ(i->timer_ticks, 3u);
  EXPECT_EQ(i->timer_settime_flags, 1u);
  EXPECT_EQ(i->timer_value->nsec, 49406829);
  EXPECT_EQ(i->timer_interval->sec, 1);
  EXPECT_EQ(i->inotify_lines.size(), 1u);
  EXPECT_EQ(i->fanotify_lines.size(), 1u);
  EXPECT_EQ(i->other_lines, std::vector<std::string>{"tty-index:\t3"});
}

TEST(ProcMisc, ParsesLocks) {
  auto locks = parse_locks(
      "1: POSIX  ADVISORY  WRITE 1234 08:02:5678 0 EOF\n"
      "1: -> POSIX  ADVISORY  WRITE 1240 08:02:5678 0 EOF\n"
      "2: OFDLCK ADVISORY  READ  -1 fd:01:99 100 199\n"
      "3: LEASE  ACTIVE    READ  77 00:2a:12 0 EOF\n"
      "4: FLOCK  ADVISORY  WRITE 5 <none>:0 0 EOF\n");
  ASSERT_TRUE(locks.ok()) << locks.error().message;
  ASSERT_EQ(locks->size(), 5u);
  EXPECT_EQ((*locks)[0].dev_major, 8u);
  EXPECT_EQ((*locks)[0].inode, 5678u);
  EXPECT_TRUE((*locks)[1].blocked);
  EXPECT_EQ((*locks)[1].pid, 1240);
  EXPECT_EQ((*locks)[2].kind, "OFDLCK");
  EXPECT_EQ((*locks)[2].pid, -1);
  EXPECT_EQ((*locks)[2].dev_major, 0xfdu);
  EXPECT_EQ((*locks)[2].start, 100u);
  EXPECT_EQ((*locks)[2].end, 199u);
  EXPECT_EQ((*locks)[3].mode, "ACTIVE");
  EXPECT_FALSE((*locks)[4].dev_major.has_value());
  EXPECT_FALSE(parse_locks("1: POSIX ADVISORY WRITE x 08:02:1 0 EOF\n").ok());
}

TEST(ProcMisc, ParsesTimers) {
  auto t = parse_timers(
      "ID: 0\nsignal: 14/00007ffd12340000\nnotify: signal/pid.4242\nClockID: 1\n"
      "ID: 1\nsignal: 34/0000000000000000\nnotify: thread/tid.4243\nClockID: 0\n");
  ASSERT_TRUE(t.ok()) << t.error().message;
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].signal, 14);
  EXPECT_EQ((*t)[0].sigev_value, 0x7ffd12340000u);
  EXPECT_EQ((*t)[0].notify, "signal");
  EXPECT_FALSE((*t)[0].notify_thread_id);
  EXPECT_EQ((*t)[0].clock_id, 1);
  EXPECT_EQ((*t)[1].id, 1);
  EXPECT_TRUE((*t)[1].notify_thread_id);
  EXPECT_EQ((*t)[1].notify_pid, 4243);
  EXPECT_FALSE(parse_timers("signal: 14/0\n").ok());
}

TEST(ProcMisc, ParsesAuxvAndPersonality) {
  uint64_t raw[] = {6, 4096, 33, 0x7fff0000, 0, 0};
  auto a = parse_auxv(std::as_bytes(std::span(raw)));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, (std::vector<AuxvEntry>{{6, 4096}, {33, 0x7fff0000}}));
  EXPECT_FALSE(parse_auxv(std::as_bytes(std::span(raw, 4))).ok());
  EXPECT_EQ(*parse_personality("00400000\n"), 0x400000u);
  EXPECT_FALSE(parse_personality("zz").ok());
}

TEST(ProcMisc, ParsesTheAutogroupNiceValue) {
  using Nice = std::optional<int32_t>;
  EXPECT_EQ(*parse_autogroup_nice("/autogroup-34271 nice 0\n"), Nice(0));
  EXPECT_EQ(*parse_autogroup_nice("/autogroup-7 nice -20\n"), Nice(-20));
  EXPECT_EQ(*parse_autogroup_nice("/autogroup-7 nice 19"), Nice(19));
  // A process in no autogroup (a session older than autogroups) reads an empty file.
  EXPECT_EQ(*parse_autogroup_nice(""), Nice());
  EXPECT_EQ(*parse_autogroup_nice("\n"), Nice());
  EXPECT_FALSE(parse_autogroup_nice("/autogroup-7 nice 20").ok());
  EXPECT_FALSE(parse_autogroup_nice("/autogroup-7 nice").ok());
  EXPECT_FALSE(parse_autogroup_nice("nice 3").ok());
  // A new session starts a new autogroup at nice 0.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t leader = ::fork();
  ASSERT_GE(leader, 0);
  if (leader == 0) {
    ::setsid();
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  auto theirs = read_autogroup_nice(leader);
  ::kill(leader, SIGKILL);
  ::waitpid(leader, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  ASSERT_TRUE(theirs.ok()) << theirs.error().message;
  EXPECT_EQ(*theirs, Nice(0));
}

}  // namespace
}  // namespace ckpt::proc
