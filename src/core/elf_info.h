// What a native workload's file is, from its ELF header and program headers: enough to refuse
// what cannot run in a sandbox (not ELF, dynamically linked, another architecture).
#pragma once

#include <filesystem>
#include <string>

#include "core/error.h"

namespace nex {

// Ok when `path` is a 64-bit ELF executable for this machine with no interpreter (PT_INTERP);
// otherwise an error saying what is wrong and how to build a suitable binary.
Status check_static_executable(const std::filesystem::path& path);

}  // namespace nex
