// The seccomp filter every namespace sandbox runs under: system calls a workload never needs
// (mounting, tracing, kernel modules, kexec, bpf, perf, keyrings, new namespaces, setting the
// clock, rebooting, swap...) fail with EPERM; everything else is allowed. The program is built
// once, in the node, with libseccomp; the sandbox's first process only installs it, because
// after clone() in a multithreaded process nothing may allocate.
#pragma once

#include <linux/filter.h>

#include <vector>

#include "core/error.h"

namespace nex::sandbox {

struct SeccompProgram {
  std::vector<sock_filter> code;
};

Result<SeccompProgram> build_workload_filter();
// Installs the program on the calling thread (and what it execs). Async-signal-safe; returns
// 0 or an errno.
int install_filter(const SeccompProgram& program);

}  // namespace nex::sandbox
