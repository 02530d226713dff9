// libsodium must be initialised once before use; every module calls ensure_sodium() at the
// entry points that need it (cheap after the first call, thread-safe).
#pragma once

namespace nex {

void ensure_sodium();

}  // namespace nex
