// Hashes used by the wire formats: SHA-256 (object store digests, artifact hashes), streamed so
// large objects are never held whole; SHA-512/256 (JWT jti).
#pragma once

#include <sodium.h>

#include <array>
#include <span>

#include "core/encoding.h"

namespace nex::crypto {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void update(std::span<const uint8_t> data);
  Sha256Digest finish();

 private:
  crypto_hash_sha256_state state_;
};

Sha256Digest sha256(std::span<const uint8_t> data);
std::array<uint8_t, 32> sha512_256(std::span<const uint8_t> data);

}  // namespace nex::crypto
