#include "core/elf_info.h"

#include <elf.h>

#include <cstring>
#include <fstream>

namespace nex {
namespace {

#if defined(__x86_64__)
constexpr uint16_t kHostMachine = EM_X86_64;
constexpr const char* kHostArch = "x86-64";
#elif defined(__aarch64__)
constexpr uint16_t kHostMachine = EM_AARCH64;
constexpr const char* kHostArch = "arm64";
#else
#error "unsupported host architecture"
#endif

const char* machine_name(uint16_t m) {
  switch (m) {
    case EM_X86_64:
      return "x86-64";
    case EM_AARCH64:
      return "arm64";
    case EM_386:
      return "x86 (32-bit)";
    case EM_ARM:
      return "arm (32-bit)";
    case EM_RISCV:
      return "riscv";
    default:
      return "another architecture";
  }
}

constexpr const char* kHowToBuild =
    "native workloads must be statically linked Linux executables "
    "(Go: CGO_ENABLED=0 go build -tags netgo -ldflags '-extldflags \"-static\"'; C: cc -static)";

}  // namespace

Status check_static_executable(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(ErrorCode::kNotFound, "cannot read " + path.string() + ": " + std::strerror(errno));
  Elf64_Ehdr eh{};
  in.read(reinterpret_cast<char*>(&eh), sizeof eh);
  if (!in || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
    return fail(ErrorCode::kInvalidArgument, std::string("not an ELF binary: ") + kHowToBuild);
  }
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) {
    return fail(ErrorCode::kInvalidArgument, std::string("a 32-bit ELF binary: ") + kHowToBuild);
  }
  if (eh.e_machine != kHostMachine) {
    return fail(ErrorCode::kInvalidArgument, std::string("built for ") +
                                                 machine_name(eh.e_machine) +
                                                 ", but this node runs " + kHostArch);
  }
  if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) {
    return fail(ErrorCode::kInvalidArgument, std::string("not an executable: ") + kHowToBuild);
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 512) {
    return fail(ErrorCode::kInvalidArgument, "malformed ELF program headers");
  }
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    in.seekg(static_cast<std::streamoff>(eh.e_phoff + i * sizeof ph));
    in.read(reinterpret_cast<char*>(&ph), sizeof ph);
    if (!in) return fail(ErrorCode::kInvalidArgument, "malformed ELF program headers");
    if (ph.p_type == PT_INTERP) {
      return fail(ErrorCode::kInvalidArgument,
                  std::string("dynamically linked (it needs an ELF interpreter): ") + kHowToBuild);
    }
  }
  return {};
}

}  // namespace nex
