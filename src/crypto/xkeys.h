// XKeys: X25519 keys in nkey encoding ("X…" public, "SX…" seed) that seal messages with NaCl
// box in the "xkv1" format (docs/wire.md "NATS formats"). Nex uses them to encrypt workload
// environments to a node.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "core/encoding.h"
#include "core/error.h"
#include "crypto/nkeys.h"

namespace nex::crypto {

class XKey {
 public:
  static XKey create();
  static XKey from_raw_seed(const RawKey& seed);
  static Result<XKey> from_seed(std::string_view seed);

  XKey(const XKey&);
  XKey& operator=(const XKey&);
  ~XKey();

  std::string public_key() const;
  std::string seed() const;

  // "xkv1" ‖ nonce ‖ box(message). The nonce is random unless given (tests only).
  Result<Bytes> seal(std::span<const uint8_t> message, std::string_view recipient_public_key) const;
  Result<Bytes> seal_with_nonce(std::span<const uint8_t> message,
                                std::string_view recipient_public_key,
                                std::span<const uint8_t, 24> nonce) const;
  // Fails with kInvalidArgument on a malformed seal and kPermissionDenied when it does not open
  // (wrong keys or tampered bytes).
  Result<Bytes> open(std::span<const uint8_t> sealed, std::string_view sender_public_key) const;

 private:
  XKey() = default;
  RawKey seed_{};
  RawKey public_{};
};

}  // namespace nex::crypto
