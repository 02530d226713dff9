// NKeys: Ed25519 identities of the NATS ecosystem, encoded as prefixed, CRC16-checked base32
// (docs/wire.md "NATS formats"). Public keys look like "N…"/"A…"/"U…", seeds like "SN…"/"SA…".
// Curve ("X…") keys share the encoding but are X25519 keys: see xkeys.h.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/encoding.h"
#include "core/error.h"

namespace nex::crypto {

enum class KeyType : uint8_t {
  kSeed = 18 << 3,      // 'S'
  kPrivate = 15 << 3,   // 'P'
  kServer = 13 << 3,    // 'N' (nodes)
  kCluster = 2 << 3,    // 'C'
  kOperator = 14 << 3,  // 'O'
  kAccount = 0,         // 'A'
  kUser = 20 << 3,      // 'U'
  kCurve = 23 << 3,     // 'X'
};

std::string_view key_type_name(KeyType type);
// True for the types a public key or seed may have (everything but kSeed and kPrivate).
bool is_public_key_type(KeyType type);

using RawKey = std::array<uint8_t, 32>;
using Signature = std::array<uint8_t, 64>;

// [prefix][payload][crc16 LE] in base32, and back. decode checks the CRC and the prefix.
std::string encode_key(KeyType prefix, std::span<const uint8_t> payload);
Result<Bytes> decode_key(KeyType expected_prefix, std::string_view text);

struct DecodedPublicKey {
  KeyType type;
  RawKey key;
};
// Decodes a public key of any public type; fails on seeds, bad base32, bad CRC, bad length.
Result<DecodedPublicKey> decode_public_key(std::string_view text);
Result<RawKey> decode_public_key(KeyType expected_type, std::string_view text);

struct DecodedSeed {
  KeyType type;
  RawKey seed;
};
Result<DecodedSeed> decode_seed(std::string_view text);
std::string encode_seed(KeyType type, std::span<const uint8_t, 32> raw_seed);

// An Ed25519 key pair with a public-key type. Holds the secret key; wiped on destruction.
class KeyPair {
 public:
  static Result<KeyPair> create(KeyType type);
  static Result<KeyPair> from_raw_seed(KeyType type, const RawKey& seed);
  // Parses "S?…" seeds of any non-curve type.
  static Result<KeyPair> from_seed(std::string_view seed);

  KeyPair(const KeyPair&);
  KeyPair& operator=(const KeyPair&);
  ~KeyPair();

  KeyType type() const { return type_; }
  std::string public_key() const;
  std::string seed() const;
  const RawKey& raw_public_key() const { return public_; }
  Signature sign(std::span<const uint8_t> message) const;

 private:
  KeyPair() = default;
  KeyType type_ = KeyType::kUser;
  RawKey seed_{};
  RawKey public_{};
  std::array<uint8_t, 64> secret_{};
};

// Verifies an Ed25519 signature against an encoded public key of any signing type.
Status verify(std::string_view public_key, std::span<const uint8_t> message,
              std::span<const uint8_t> signature);

}  // namespace nex::crypto
