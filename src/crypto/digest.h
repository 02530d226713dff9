// Hashes used by the wire formats: SHA-256 (object store digests, artifact hashes), streamed so
// large objects are never held whole; SHA-512/256 (JWT jti). Both come from OpenSSL (already
// linked by libnats for TLS): its SHA-256 uses the CPU's SHA extensions, ~8x libsodium's
// portable code, which made hashing the object store's bottleneck.
#pragma once

#include <array>
#include <memory>
#include <span>

#include "core/encoding.h"

struct evp_md_ctx_st;

namespace nex::crypto {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  ~Sha256();
  void update(std::span<const uint8_t> data);
  Sha256Digest finish();

 private:
  struct CtxDeleter {
    void operator()(evp_md_ctx_st* ctx) const;
  };
  std::unique_ptr<evp_md_ctx_st, CtxDeleter> ctx_;
};

Sha256Digest sha256(std::span<const uint8_t> data);
std::array<uint8_t, 32> sha512_256(std::span<const uint8_t> data);

}  // namespace nex::crypto
