#include "crypto/digest.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace nex::crypto {
namespace {

// OpenSSL digests fail only on allocation failure or a build without the algorithm: there is
// no sensible recovery, and continuing would produce wrong digests.
void require(int ok) {
  if (ok != 1) std::abort();
}

std::array<uint8_t, 32> one_shot(const EVP_MD* md, std::span<const uint8_t> data) {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  require(EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr));
  require(len == out.size() ? 1 : 0);
  return out;
}

}  // namespace

void Sha256::CtxDeleter::operator()(evp_md_ctx_st* ctx) const { EVP_MD_CTX_free(ctx); }

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  require(ctx_ != nullptr ? 1 : 0);
  require(EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr));
}
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;
Sha256::~Sha256() = default;

void Sha256::update(std::span<const uint8_t> data) {
  require(EVP_DigestUpdate(ctx_.get(), data.data(), data.size()));
}

Sha256Digest Sha256::finish() {
  Sha256Digest out{};
  unsigned int len = 0;
  require(EVP_DigestFinal_ex(ctx_.get(), out.data(), &len));
  return out;
}

Sha256Digest sha256(std::span<const uint8_t> data) { return one_shot(EVP_sha256(), data); }

std::array<uint8_t, 32> sha512_256(std::span<const uint8_t> data) {
  return one_shot(EVP_sha512_256(), data);
}

}  // namespace nex::crypto
