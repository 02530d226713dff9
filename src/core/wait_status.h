// A child's wait status (waitpid) in the words and numbers users see: how it ended, and the
// code a shell would report for it.
#pragma once

#include <string>

namespace nex {

// "exited with code 3", "was killed by signal 9 (SIGKILL)".
std::string describe_wait_status(int status);
// The exit code, or 128 plus the signal's number, as a shell reports it.
int wait_status_code(int status);

}  // namespace nex
