#pragma once
// Loopback TCP helpers of the server tests (the test is the client of a real server).
#include <gtest/gtest.h>

#include <sys/types.h>

#include <string>

namespace e2e {

// A TCP port on 127.0.0.1 that nobody listens on now (throws when none can be found).
int free_port();

// A connection to 127.0.0.1:port, retried for ~5 s while the server starts; reads give up after
// 10 s. -1 when nothing answered.
int connect_when_up(int port);

// Sends `request` on `fd` and reads until the answer contains `end`; what came, or what came
// followed by the error (" [recv: ...]", " [EOF]").
std::string exchange(int fd, const std::string& request, const std::string& end);

// The port a test program printed ("PORT n"), or -1.
int printed_port(const std::string& out);
// Byte k of the test pattern the TCP tests send both ways.
unsigned char pattern(long k);
// A blocking connection to the loopback address of `family` (AF_INET, AF_INET6) at `port`;
// reads and writes give up after 20 s. -1 on failure.
int connect_to(int family, int port);
// Sends pattern bytes [from, to).
bool send_pattern(int fd, long from, long to);
// Reads `count` bytes and checks each against the pattern; the failure says where.
::testing::AssertionResult read_pattern(int fd, long count);
// Bytes the far end of the connection `client` (this test's socket) has queued but not sent yet,
// read in process `pid` (through a copy of its socket, pidfd_getfd); -1 when not found.
long unsent_at_far_end(pid_t pid, int client);
// The far end's segment size for sending (TCP_INFO's tcpi_snd_mss), found the same way; -1.
long send_mss_at_far_end(pid_t pid, int client);
// Whether ckpt's network lock (nft table inet ckpt) holds a connection of local port `port`.
bool locked_port(int port);

}  // namespace e2e
