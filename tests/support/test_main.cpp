// main() of every test binary. With CKPT_TEST_OWN_GROUP=1 (scripts/test.sh and .ci/run set it)
// the binary first leads a process group of its own: a test that signals group 0 by mistake (a
// PID read as 0: kill(0, SIGKILL)) then kills its own binary, which CTest reports as that test's
// failure, instead of CTest and the CI script around it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  if (const char* own = std::getenv("CKPT_TEST_OWN_GROUP"); own && std::strcmp(own, "1") == 0)
    ::setpgid(0, 0);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
