// What the sockets resource reads from /proc/PID/net/tcp and tcp6: the local address (32-bit words
// printed in host byte order), the state and, for a listener, the connections waiting.
#include <gtest/gtest.h>

#include "resources/fds/inet.hpp"

namespace ckpt::fds::inet {
namespace {

TEST(TcpLineTest, ParsesAnIpv4Listener) {
  auto l = parse_tcp_line(
      "   0: 0100007F:86C9 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 "
      "960078 2 00000000f4b64460 100 0 0 10 0",
      false);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->local, "127.0.0.1:34505");
  EXPECT_EQ(l->state, 0x0A);
  EXPECT_EQ(l->rx_queue, 2u);
  EXPECT_EQ(l->tx_queue, 0u);
  EXPECT_EQ(l->inode, 960078u);
}

TEST(TcpLineTest, ParsesAnIpv6LoopbackAndAnyAddress) {
  auto l = parse_tcp_line(
      "   3: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A "
      "00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0",
      true);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->local, "[::1]:8080");
  EXPECT_EQ(l->inode, 4242u);
  auto any = parse_tcp_line(
      "   4: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A "
      "00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0",
      true);
  ASSERT_TRUE(any);
  EXPECT_EQ(any->local, "[::]:80");
}

TEST(TcpLineTest, ParsesAConnectedSocketState) {
  auto l = parse_tcp_line(
      "   1: 0100007F:0050 0200000A:D431 01 00000010:00000020 00:00000000 00000000     0        0 "
      "55 1 0000000000000000 20 4 30 10 -1",
      false);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->state, 0x01);
  EXPECT_EQ(l->tx_queue, 16u);
  EXPECT_EQ(l->rx_queue, 32u);
}

TEST(TcpLineTest, RejectsHeaderAndMalformedLines) {
  EXPECT_FALSE(
      parse_tcp_line("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
                     "retrnsmt   uid  timeout inode",
                     false));
  EXPECT_FALSE(parse_tcp_line("", false));
  // An IPv4 address where tcp6 is expected, and a port above 65535.
  EXPECT_FALSE(parse_tcp_line("   0: 0100007F:0050 00000000:0000 0A 0:0 00:0 0 0 0 1 1", true));
  EXPECT_FALSE(parse_tcp_line("   0: 0100007F:10000 00000000:0000 0A 0:0 00:0 0 0 0 1 1", false));
  EXPECT_FALSE(parse_tcp_line("   0: 0100007F:0050 00000000:0000 0A 0:0 00:0 0 0 0 x 1", false));
}

}  // namespace
}  // namespace ckpt::fds::inet
