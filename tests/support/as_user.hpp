#pragma once
// A command run as the user nobody (uid and gid 65534, no supplementary groups, no
// capabilities): what an unprivileged user's ckpt, or program, meets. Shared by every test folder.
#include <string>
#include <vector>

namespace ckpt::test_support {

inline std::vector<std::string> as_user(std::vector<std::string> argv) {
  std::vector<std::string> out = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                  "--clear-groups", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

}  // namespace ckpt::test_support
