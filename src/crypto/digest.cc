#include "crypto/digest.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "core/sodium.h"

namespace nex::crypto {

Sha256::Sha256() {
  ensure_sodium();
  crypto_hash_sha256_init(&state_);
}

void Sha256::update(std::span<const uint8_t> data) {
  crypto_hash_sha256_update(&state_, data.data(), data.size());
}

Sha256Digest Sha256::finish() {
  Sha256Digest out;
  crypto_hash_sha256_final(&state_, out.data());
  return out;
}

Sha256Digest sha256(std::span<const uint8_t> data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

// libsodium has no SHA-512/256 (SHA-512 with its own IV, truncated); OpenSSL, already linked by
// libnats for TLS, does.
std::array<uint8_t, 32> sha512_256(std::span<const uint8_t> data) {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha512_256(), nullptr) != 1 ||
      len != out.size()) {
    std::abort();  // only fails if OpenSSL lacks the algorithm: a broken installation
  }
  return out;
}

}  // namespace nex::crypto
