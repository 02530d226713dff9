#include "cli/local_keys.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "core/file_io.h"

namespace nex::cli {
namespace fs = std::filesystem;

std::string default_state_dir() { return (nex_home() / "node").string(); }

fs::path nex_home() {
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : "/tmp") / ".nex";
}

// The first nkey seed in `path` (a token starting with 'S'), as `nk -gen` and nex write them.
Result<std::string> read_seed(const fs::path& path, const char* what) {
  std::ifstream in(path);
  if (!in)
    return fail(ErrorCode::kNotFound, std::string("cannot read the ") + what + " " + path.string() +
                                          ": " + std::strerror(errno));
  for (std::string token; in >> token;) {
    if (token.starts_with('S')) return token;
  }
  return fail(ErrorCode::kInvalidArgument, path.string() + " holds no nkey seed (S...)");
}

// Reads a seed from `path`, or creates one (mode 0600) with `make`, saying which.
Result<std::string> seed_file(const fs::path& path, const char* what,
                              const std::function<std::string()>& make, std::FILE* say) {
  if (fs::exists(path)) {
    std::fprintf(say, "Reusing existing %s: %s\n", what, path.c_str());
    return read_seed(path, what);
  }
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  ::chmod(path.parent_path().c_str(), 0700);
  std::string seed = make();
  {
    // Created with 0600 from the start, so the seed is never readable by others.
    NEX_RETURN_IF_ERROR(
        write_file(path, seed + "\n", {.mode = 0600, .exclusive = true, .sync = true}));
  }
  std::fprintf(say, "Created %s: %s\n", what, path.c_str());
  return seed;
}

Result<crypto::KeyPair> default_issuer() {
  const fs::path path = nex_home() / "issuer.nk";
  auto seed = fs::exists(path)
                  ? read_seed(path, "issuer account key")
                  : seed_file(path, "issuer account key", [] {
                      return crypto::KeyPair::create(crypto::KeyType::kAccount)->seed();
                    });
  if (!seed) return fail(seed.error());
  auto issuer = crypto::KeyPair::from_seed(*seed);
  if (!issuer || issuer->type() != crypto::KeyType::kAccount)
    return fail(ErrorCode::kInvalidArgument,
                "the issuer key in " + nex_home().string() + " is not an account seed (SA...)");
  return issuer;
}

}  // namespace nex::cli
