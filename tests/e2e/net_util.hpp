#pragma once
// Loopback TCP helpers of the server tests (the test is the client of a real server).
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

}  // namespace e2e
