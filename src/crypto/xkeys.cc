#include "crypto/xkeys.h"

#include <sodium.h>

#include <cstring>

#include "core/sodium.h"

namespace nex::crypto {
namespace {

constexpr std::string_view kVersion = "xkv1";
constexpr size_t kNonceLen = crypto_box_NONCEBYTES;  // 24
constexpr size_t kHeaderLen = 4 + kNonceLen;

}  // namespace

XKey XKey::create() {
  ensure_sodium();
  RawKey seed;
  randombytes_buf(seed.data(), seed.size());
  XKey key = from_raw_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return key;
}

XKey XKey::from_raw_seed(const RawKey& seed) {
  XKey key;
  key.seed_ = seed;
  crypto_scalarmult_base(key.public_.data(), key.seed_.data());
  return key;
}

Result<XKey> XKey::from_seed(std::string_view seed) {
  auto decoded = decode_seed(seed);
  if (!decoded) return fail(decoded.error());
  if (decoded->type != KeyType::kCurve) {
    return fail(ErrorCode::kInvalidArgument,
                "invalid xkey seed: expected a curve (SX…) seed, got " +
                    std::string(key_type_name(decoded->type)));
  }
  XKey key = from_raw_seed(decoded->seed);
  sodium_memzero(decoded->seed.data(), decoded->seed.size());
  return key;
}

XKey::XKey(const XKey&) = default;
XKey& XKey::operator=(const XKey&) = default;
XKey::~XKey() { sodium_memzero(seed_.data(), seed_.size()); }

std::string XKey::public_key() const { return encode_key(KeyType::kCurve, public_); }
std::string XKey::seed() const { return encode_seed(KeyType::kCurve, seed_); }

Result<Bytes> XKey::seal(std::span<const uint8_t> message,
                         std::string_view recipient_public_key) const {
  ensure_sodium();
  std::array<uint8_t, kNonceLen> nonce;
  randombytes_buf(nonce.data(), nonce.size());
  return seal_with_nonce(message, recipient_public_key, nonce);
}

Result<Bytes> XKey::seal_with_nonce(std::span<const uint8_t> message,
                                    std::string_view recipient_public_key,
                                    std::span<const uint8_t, 24> nonce) const {
  auto recipient = decode_public_key(KeyType::kCurve, recipient_public_key);
  if (!recipient) return fail(recipient.error().wrap("recipient"));
  Bytes out(kHeaderLen + crypto_box_MACBYTES + message.size());
  std::memcpy(out.data(), kVersion.data(), kVersion.size());
  std::memcpy(out.data() + kVersion.size(), nonce.data(), kNonceLen);
  if (crypto_box_easy(out.data() + kHeaderLen, message.data(), message.size(), nonce.data(),
                      recipient->data(), seed_.data()) != 0) {
    return fail(ErrorCode::kInvalidArgument, "cannot seal to this recipient key");
  }
  return out;
}

Result<Bytes> XKey::open(std::span<const uint8_t> sealed,
                         std::string_view sender_public_key) const {
  auto sender = decode_public_key(KeyType::kCurve, sender_public_key);
  if (!sender) return fail(sender.error().wrap("sender"));
  if (sealed.size() < kHeaderLen + crypto_box_MACBYTES) {
    return fail(ErrorCode::kInvalidArgument, "invalid xkey seal: too short");
  }
  if (std::memcmp(sealed.data(), kVersion.data(), kVersion.size()) != 0) {
    return fail(ErrorCode::kInvalidArgument, "invalid xkey seal: missing xkv1 header");
  }
  Bytes out(sealed.size() - kHeaderLen - crypto_box_MACBYTES);
  if (crypto_box_open_easy(out.data(), sealed.data() + kHeaderLen, sealed.size() - kHeaderLen,
                           sealed.data() + kVersion.size(), sender->data(), seed_.data()) != 0) {
    return fail(ErrorCode::kPermissionDenied,
                "cannot open xkey seal: wrong keys or tampered message");
  }
  return out;
}

}  // namespace nex::crypto
