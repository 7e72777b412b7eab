// What the unix socket resource reads from a sock_diag reply: the socket's type and state, its
// peer's inode (0 once the peer is closed), its name (abstract names shown with '@') and its
// shutdown bits, a listener's waiting connections, queue lengths and socket file; a missing
// socket and kernel errors.
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>

#include <cstring>

#include "resources/fds/unix_diag.hpp"

namespace ckpt::fds::unix_diag {
namespace {

// Builds one netlink message: a unix_diag_msg followed by attributes.
class Reply {
 public:
  Reply(uint32_t ino, uint8_t type, uint8_t state) {
    unix_diag_msg m{};
    m.udiag_family = AF_UNIX;
    m.udiag_type = type;
    m.udiag_state = state;
    m.udiag_ino = ino;
    body_.assign(reinterpret_cast<const char*>(&m), sizeof(m));
    body_.resize(NLMSG_ALIGN(body_.size()), '\0');
  }
  Reply& attr(uint16_t type, const void* data, size_t len) {
    rtattr a{};
    a.rta_type = type;
    a.rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
    body_.append(reinterpret_cast<const char*>(&a), sizeof(a));
    body_.append(static_cast<const char*>(data), len);
    body_.resize(NLMSG_ALIGN(body_.size()), '\0');
    return *this;
  }
  Reply& u32(uint16_t type, uint32_t v) { return attr(type, &v, sizeof(v)); }
  std::string bytes(uint16_t msg_type = SOCK_DIAG_BY_FAMILY) const {
    nlmsghdr h{};
    h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(body_.size()));
    h.nlmsg_type = msg_type;
    return std::string(reinterpret_cast<const char*>(&h), sizeof(h)) + body_;
  }

 private:
  std::string body_;
};

std::string error_reply(int err) {
  nlmsghdr h{};
  h.nlmsg_len = NLMSG_LENGTH(sizeof(nlmsgerr));
  h.nlmsg_type = NLMSG_ERROR;
  nlmsgerr e{};
  e.error = -err;
  return std::string(reinterpret_cast<const char*>(&h), sizeof(h)) +
         std::string(reinterpret_cast<const char*>(&e), sizeof(e));
}

TEST(UnixDiagReplyTest, ReadsPeerAndShutdownOfASocketpairEnd) {
  uint8_t shut = 2;  // SEND_SHUTDOWN
  auto r = parse_diag_reply(Reply(4242, SOCK_SEQPACKET, 1)
                                .u32(UNIX_DIAG_PEER, 4243)
                                .attr(UNIX_DIAG_SHUTDOWN, &shut, 1)
                                .bytes(),
                            4242);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(r->has_value());
  const DiagInfo& d = **r;
  EXPECT_EQ(d.ino, 4242u);
  EXPECT_EQ(d.type, SOCK_SEQPACKET);
  EXPECT_EQ(d.state, 1);
  ASSERT_TRUE(d.peer.has_value());
  EXPECT_EQ(*d.peer, 4243u);
  EXPECT_EQ(d.shutdown, 2);
  EXPECT_EQ(d.name, "");
}

TEST(UnixDiagReplyTest, NoPeerAttributeMeansNotConnected) {
  auto r = parse_diag_reply(Reply(7, SOCK_DGRAM, 7).bytes(), 7);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_value());
  EXPECT_FALSE((*r)->peer.has_value());
}

TEST(UnixDiagReplyTest, PeerZeroMeansThePeerWasClosed) {
  auto r = parse_diag_reply(Reply(7, SOCK_STREAM, 1).u32(UNIX_DIAG_PEER, 0).bytes(), 7);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->peer.has_value());
  EXPECT_EQ(*(*r)->peer, 0u);
}

TEST(UnixDiagReplyTest, AbstractAndPathNames) {
  const char abstract[] = "\0srv\0x";  // abstract names may hold NULs
  auto a = parse_diag_reply(Reply(9, SOCK_DGRAM, 7).attr(UNIX_DIAG_NAME, abstract, 6).bytes(), 9);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->name, "@srv@x");
  const char path[] = "/run/x.sock";
  auto p = parse_diag_reply(
      Reply(9, SOCK_STREAM, 10).attr(UNIX_DIAG_NAME, path, sizeof(path) - 1).bytes(), 9);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->name, "/run/x.sock");
  EXPECT_EQ((*p)->state, 10);
}

// A listener: its waiting connections' clients in accept order, its backlog, the inode of the
// file its path was bound to, and its name kept byte for byte (NULs included).
TEST(UnixDiagReplyTest, ListenerWaitingConnectionsBacklogAndFile) {
  const uint32_t icons[] = {71, 0, 73};
  unix_diag_rqlen q{3, 128};
  unix_diag_vfs vfs{555, 2049};
  const char abstract[] = "\0a\0b";
  auto r = parse_diag_reply(Reply(70, SOCK_STREAM, 10)
                                .attr(UNIX_DIAG_NAME, abstract, 4)
                                .attr(UNIX_DIAG_ICONS, icons, sizeof(icons))
                                .attr(UNIX_DIAG_RQLEN, &q, sizeof(q))
                                .attr(UNIX_DIAG_VFS, &vfs, sizeof(vfs))
                                .bytes(),
                            70);
  ASSERT_TRUE(r.ok() && r->has_value());
  const DiagInfo& d = **r;
  EXPECT_EQ(d.icons, (std::vector<uint64_t>{71, 0, 73}));
  EXPECT_EQ(d.rqueue, 3u);
  EXPECT_EQ(d.wqueue, 128u);
  ASSERT_TRUE(d.vfs_ino && d.vfs_dev);
  EXPECT_EQ(*d.vfs_ino, 555u);
  EXPECT_EQ(*d.vfs_dev, 2049u);
  EXPECT_EQ(d.raw_name, std::string("\0a\0b", 4));
  EXPECT_EQ(d.name, "@a@b");
}

TEST(UnixDiagReplyTest, ShortAttributesAreIgnored) {
  uint16_t half = 1;
  auto r = parse_diag_reply(Reply(5, SOCK_DGRAM, 7)
                                .attr(UNIX_DIAG_RQLEN, &half, sizeof(half))
                                .attr(UNIX_DIAG_VFS, &half, sizeof(half))
                                .attr(UNIX_DIAG_ICONS, &half, sizeof(half))
                                .bytes(),
                            5);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->rqueue, 0u);
  EXPECT_FALSE((*r)->vfs_ino.has_value());
  EXPECT_TRUE((*r)->icons.empty());
}

TEST(UnixDiagReplyTest, AnswerForAnotherInodeIsNoAnswer) {
  auto r = parse_diag_reply(Reply(1, SOCK_STREAM, 1).u32(UNIX_DIAG_PEER, 2).bytes(), 5);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
}

TEST(UnixDiagReplyTest, NoSuchSocketIsNoAnswerOtherErrorsFail) {
  auto missing = parse_diag_reply(error_reply(ENOENT), 5);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  auto denied = parse_diag_reply(error_reply(EPERM), 5);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().errnum, EPERM);
  EXPECT_NE(denied.error().message.find("socket:[5]"), std::string::npos) << denied.error().message;
}

TEST(UnixDiagReplyTest, TruncatedOrGarbageRepliesAreNoAnswer) {
  std::string full = Reply(3, SOCK_STREAM, 1).u32(UNIX_DIAG_PEER, 4).bytes();
  for (size_t cut = 0; cut < full.size(); ++cut) {
    auto r = parse_diag_reply(std::string_view(full).substr(0, cut), 3);
    ASSERT_TRUE(r.ok()) << "cut at " << cut;
    if (r->has_value()) {
      EXPECT_EQ((*r)->ino, 3u);  // the attributes may be cut, never overread
    }
  }
  auto junk = parse_diag_reply(std::string(100, '\xff'), 3);
  EXPECT_TRUE(junk.ok() && !junk->has_value());
}

}  // namespace
}  // namespace ckpt::fds::unix_diag
