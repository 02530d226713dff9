#include "sandbox/seccomp_filter.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <memory>

namespace nex::sandbox {

namespace {

// Denied outright (EPERM).
constexpr const char* kDenied[] = {
    // file systems and the mount table
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "swapon",
    "swapoff",
    "quotactl",
    "quotactl_fd",
    "name_to_handle_at",
    "open_by_handle_at",
    // other processes' memory
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    // the kernel itself
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "bpf",
    "perf_event_open",
    "reboot",
    "acct",
    "syslog",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "userfaultfd",
    "uselib",
    "vhangup",
    // keyrings
    "keyctl",
    "add_key",
    "request_key",
    // namespaces
    "unshare",
    "setns",
    // the clock
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
};

constexpr int kNamespaceFlags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,   CLONE_NEWUSER,
                                   CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};

}  // namespace

Result<SeccompProgram> build_workload_filter() {
  std::unique_ptr<void, decltype(&seccomp_release)> ctx(seccomp_init(SCMP_ACT_ALLOW),
                                                        &seccomp_release);
  if (!ctx) return fail(ErrorCode::kInternal, "seccomp_init failed");
  for (const char* name : kDenied) {
    const int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), nr, 0); rc != 0)
      return fail(ErrorCode::kInternal, std::string("seccomp rule for ") + name + " failed");
  }
  // clone() may make threads and processes, never namespaces. clone3 hides its flags in memory
  // a filter cannot read, so it reports ENOSYS and the C library falls back to clone().
  for (int flag : kNamespaceFlags) {
    if (seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, static_cast<scmp_datum_t>(flag),
                                 static_cast<scmp_datum_t>(flag))) != 0)
      return fail(ErrorCode::kInternal, "seccomp rule for clone failed");
  }
  if (int nr = seccomp_syscall_resolve_name("clone3"); nr != __NR_SCMP_ERROR)
    (void)seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), nr, 0);
  // Export the BPF program through a memory file (libseccomp 2.5 exports only to a descriptor).
  const int fd = memfd_create("nex-seccomp", MFD_CLOEXEC);
  if (fd < 0) return fail(ErrorCode::kIo, "memfd_create failed");
  if (seccomp_export_bpf(ctx.get(), fd) != 0) {
    close(fd);
    return fail(ErrorCode::kInternal, "seccomp_export_bpf failed");
  }
  const off_t size = lseek(fd, 0, SEEK_END);
  SeccompProgram program;
  program.code.resize(static_cast<size_t>(size) / sizeof(sock_filter));
  const ssize_t n = pread(fd, program.code.data(), static_cast<size_t>(size), 0);
  close(fd);
  if (n != size || program.code.empty())
    return fail(ErrorCode::kIo, "cannot read the exported seccomp program");
  return program;
}

int install_filter(const SeccompProgram& program) {
  sock_fprog prog{static_cast<unsigned short>(program.code.size()),
                  const_cast<sock_filter*>(program.code.data())};
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return errno;
  return 0;
}

}  // namespace nex::sandbox
