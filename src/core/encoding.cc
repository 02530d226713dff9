#include "core/encoding.h"

#include <sodium.h>

namespace nex {
namespace {

constexpr char kBase32Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int base32_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= '2' && c <= '7') return c - '2' + 26;
  return -1;
}

int sodium_variant(Base64 variant) {
  switch (variant) {
    case Base64::kStandard:
      return sodium_base64_VARIANT_ORIGINAL;
    case Base64::kStandardNoPad:
      return sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
    case Base64::kUrl:
      return sodium_base64_VARIANT_URLSAFE;
    case Base64::kUrlNoPad:
      return sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  }
  return sodium_base64_VARIANT_ORIGINAL;
}

}  // namespace

std::string base32_encode(std::span<const uint8_t> data) {
  std::string out;
  out.reserve((data.size() * 8 + 4) / 5);
  uint32_t buffer = 0;
  int bits = 0;
  for (uint8_t byte : data) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out.push_back(kBase32Alphabet[(buffer >> (bits - 5)) & 0x1F]);
      bits -= 5;
    }
  }
  if (bits > 0) out.push_back(kBase32Alphabet[(buffer << (5 - bits)) & 0x1F]);
  return out;
}

Result<Bytes> base32_decode(std::string_view text) {
  Bytes out;
  out.reserve(text.size() * 5 / 8);
  uint32_t buffer = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    int v = base32_value(text[i]);
    if (v < 0) {
      return fail(ErrorCode::kInvalidArgument,
                  "invalid base32 character at position " + std::to_string(i));
    }
    buffer = (buffer << 5) | static_cast<uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<uint8_t>(buffer >> (bits - 8)));
      bits -= 8;
    }
  }
  // Leftover bits must be padding zeros, and there can be at most 4 of them.
  if (bits >= 5 || (buffer & ((1u << bits) - 1)) != 0) {
    return fail(ErrorCode::kInvalidArgument, "invalid base32 length or trailing bits");
  }
  return out;
}

std::string base64_encode(std::span<const uint8_t> data, Base64 variant) {
  const int v = sodium_variant(variant);
  std::string out(sodium_base64_encoded_len(data.size(), v), '\0');
  sodium_bin2base64(out.data(), out.size(), data.data(), data.size(), v);
  out.resize(out.size() - 1);  // drop the terminating NUL libsodium writes
  return out;
}

Result<Bytes> base64_decode(std::string_view text, Base64 variant) {
  Bytes out(text.size() * 3 / 4 + 3);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end,
                        sodium_variant(variant)) != 0 ||
      end != text.data() + text.size()) {
    return fail(ErrorCode::kInvalidArgument, "invalid base64");
  }
  out.resize(len);
  return out;
}

std::string hex_encode(std::span<const uint8_t> data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (uint8_t b : data) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xF]);
  }
  return out;
}

}  // namespace nex
