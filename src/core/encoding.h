// Text encodings of binary data used by the NATS formats: base32 (nkeys, jti), base64 in its
// standard and URL-safe forms, with or without padding (xkey seals, JWT segments, object store
// meta subjects and digests), and hex.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace nex {

using Bytes = std::vector<uint8_t>;

inline std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// RFC 4648 alphabet A-Z2-7, never padded (the nkeys form).
std::string base32_encode(std::span<const uint8_t> data);
// Rejects characters outside the alphabet, padding, and non-zero trailing bits.
Result<Bytes> base32_decode(std::string_view text);

enum class Base64 { kStandard, kStandardNoPad, kUrl, kUrlNoPad };
std::string base64_encode(std::span<const uint8_t> data, Base64 variant);
Result<Bytes> base64_decode(std::string_view text, Base64 variant);

std::string hex_encode(std::span<const uint8_t> data);

}  // namespace nex
