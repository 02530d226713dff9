#include "crypto/nkeys.h"

#include <sodium.h>

#include "core/sodium.h"

#include <cstring>
#include <vector>

namespace nex::crypto {
namespace {

uint16_t crc16_xmodem(std::span<const uint8_t> data) {
  uint16_t crc = 0;
  for (uint8_t byte : data) {
    crc ^= static_cast<uint16_t>(byte) << 8;
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

void append_crc(Bytes& raw) {
  uint16_t crc = crc16_xmodem(raw);
  raw.push_back(static_cast<uint8_t>(crc & 0xFF));
  raw.push_back(static_cast<uint8_t>(crc >> 8));
}

// base32 decode + CRC check; returns the bytes without the CRC.
Result<Bytes> decode_checked(std::string_view text) {
  auto raw = base32_decode(text);
  if (!raw)
    return fail(ErrorCode::kInvalidArgument, "invalid nkey encoding: " + raw.error().message);
  if (raw->size() < 4) return fail(ErrorCode::kInvalidArgument, "invalid nkey: too short");
  const size_t n = raw->size() - 2;
  const uint16_t want = static_cast<uint16_t>((*raw)[n] | ((*raw)[n + 1] << 8));
  if (crc16_xmodem(std::span(raw->data(), n)) != want) {
    return fail(ErrorCode::kInvalidArgument, "invalid nkey: checksum mismatch");
  }
  raw->resize(n);
  return raw;
}

bool valid_type_byte(uint8_t b) {
  switch (static_cast<KeyType>(b)) {
    case KeyType::kServer:
    case KeyType::kCluster:
    case KeyType::kOperator:
    case KeyType::kAccount:
    case KeyType::kUser:
    case KeyType::kCurve:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string_view key_type_name(KeyType type) {
  switch (type) {
    case KeyType::kSeed:
      return "seed";
    case KeyType::kPrivate:
      return "private";
    case KeyType::kServer:
      return "server";
    case KeyType::kCluster:
      return "cluster";
    case KeyType::kOperator:
      return "operator";
    case KeyType::kAccount:
      return "account";
    case KeyType::kUser:
      return "user";
    case KeyType::kCurve:
      return "curve";
  }
  return "unknown";
}

bool is_public_key_type(KeyType type) { return valid_type_byte(static_cast<uint8_t>(type)); }

std::string encode_key(KeyType prefix, std::span<const uint8_t> payload) {
  Bytes raw;
  raw.reserve(payload.size() + 3);
  raw.push_back(static_cast<uint8_t>(prefix));
  raw.insert(raw.end(), payload.begin(), payload.end());
  append_crc(raw);
  std::string out = base32_encode(raw);
  sodium_memzero(raw.data(), raw.size());
  return out;
}

Result<Bytes> decode_key(KeyType expected_prefix, std::string_view text) {
  auto raw = decode_checked(text);
  if (!raw) return raw;
  if ((*raw)[0] != static_cast<uint8_t>(expected_prefix)) {
    return fail(ErrorCode::kInvalidArgument,
                "invalid nkey: expected a " + std::string(key_type_name(expected_prefix)) + " key");
  }
  return Bytes(raw->begin() + 1, raw->end());
}

Result<DecodedPublicKey> decode_public_key(std::string_view text) {
  auto raw = decode_checked(text);
  if (!raw) return fail(raw.error());
  if (raw->size() != 33)
    return fail(ErrorCode::kInvalidArgument, "invalid public nkey: wrong length");
  if (!valid_type_byte((*raw)[0])) {
    return fail(ErrorCode::kInvalidArgument, "invalid public nkey: unknown or non-public prefix");
  }
  DecodedPublicKey out{static_cast<KeyType>((*raw)[0]), {}};
  std::memcpy(out.key.data(), raw->data() + 1, 32);
  return out;
}

Result<RawKey> decode_public_key(KeyType expected_type, std::string_view text) {
  auto decoded = decode_public_key(text);
  if (!decoded) return fail(decoded.error());
  if (decoded->type != expected_type) {
    return fail(ErrorCode::kInvalidArgument,
                "invalid public nkey: expected a " + std::string(key_type_name(expected_type)) +
                    " key, got " + std::string(key_type_name(decoded->type)));
  }
  return decoded->key;
}

std::string encode_seed(KeyType type, std::span<const uint8_t, 32> raw_seed) {
  const uint8_t t = static_cast<uint8_t>(type);
  Bytes raw;
  raw.reserve(36);
  raw.push_back(static_cast<uint8_t>(static_cast<uint8_t>(KeyType::kSeed) | (t >> 5)));
  raw.push_back(static_cast<uint8_t>((t & 0x1F) << 3));
  raw.insert(raw.end(), raw_seed.begin(), raw_seed.end());
  append_crc(raw);
  std::string out = base32_encode(raw);
  sodium_memzero(raw.data(), raw.size());
  return out;
}

Result<DecodedSeed> decode_seed(std::string_view text) {
  auto raw = decode_checked(text);
  if (!raw) return fail(raw.error());
  DecodedSeed out{};
  bool ok = raw->size() == 34 && ((*raw)[0] & 0xF8) == static_cast<uint8_t>(KeyType::kSeed);
  if (ok) {
    const uint8_t t = static_cast<uint8_t>((((*raw)[0] & 0x07) << 5) | (((*raw)[1] & 0xF8) >> 3));
    ok = valid_type_byte(t);
    out.type = static_cast<KeyType>(t);
    if (ok) std::memcpy(out.seed.data(), raw->data() + 2, 32);
  }
  sodium_memzero(raw->data(), raw->size());
  if (!ok) return fail(ErrorCode::kInvalidArgument, "invalid nkey seed: wrong prefix or length");
  return out;
}

Result<KeyPair> KeyPair::create(KeyType type) {
  ensure_sodium();
  RawKey seed;
  randombytes_buf(seed.data(), seed.size());
  auto kp = from_raw_seed(type, seed);
  sodium_memzero(seed.data(), seed.size());
  return kp;
}

Result<KeyPair> KeyPair::from_raw_seed(KeyType type, const RawKey& seed) {
  if (!is_public_key_type(type) || type == KeyType::kCurve) {
    return fail(ErrorCode::kInvalidArgument,
                "cannot make a signing key of type " + std::string(key_type_name(type)));
  }
  KeyPair kp;
  kp.type_ = type;
  kp.seed_ = seed;
  crypto_sign_seed_keypair(kp.public_.data(), kp.secret_.data(), seed.data());
  return kp;
}

Result<KeyPair> KeyPair::from_seed(std::string_view seed) {
  auto decoded = decode_seed(seed);
  if (!decoded) return fail(decoded.error());
  auto kp = from_raw_seed(decoded->type, decoded->seed);
  sodium_memzero(decoded->seed.data(), decoded->seed.size());
  return kp;
}

KeyPair::KeyPair(const KeyPair&) = default;
KeyPair& KeyPair::operator=(const KeyPair&) = default;

KeyPair::~KeyPair() {
  sodium_memzero(seed_.data(), seed_.size());
  sodium_memzero(secret_.data(), secret_.size());
}

std::string KeyPair::public_key() const { return encode_key(type_, public_); }

std::string KeyPair::seed() const { return encode_seed(type_, seed_); }

Signature KeyPair::sign(std::span<const uint8_t> message) const {
  Signature sig;
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), secret_.data());
  return sig;
}

Status verify(std::string_view public_key, std::span<const uint8_t> message,
              std::span<const uint8_t> signature) {
  auto decoded = decode_public_key(public_key);
  if (!decoded) return fail(decoded.error());
  if (decoded->type == KeyType::kCurve) {
    return fail(ErrorCode::kInvalidArgument, "curve keys cannot verify signatures");
  }
  if (signature.size() != crypto_sign_BYTES ||
      crypto_sign_verify_detached(signature.data(), message.data(), message.size(),
                                  decoded->key.data()) != 0) {
    return fail(ErrorCode::kPermissionDenied, "signature verification failed");
  }
  return {};
}

}  // namespace nex::crypto
