#include "core/xid.h"

#include <sodium.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <ctime>

#include "core/sodium.h"

namespace nex {

std::string next_xid() {
  static constexpr char kAlphabet[] = "0123456789abcdefghijklmnopqrstuv";
  static const std::array<uint8_t, 3> machine = [] {
    ensure_sodium();
    std::array<uint8_t, 3> m;
    randombytes_buf(m.data(), m.size());
    return m;
  }();
  static std::atomic<uint32_t> counter{randombytes_random()};
  const uint32_t t = static_cast<uint32_t>(std::time(nullptr));
  const uint32_t pid = static_cast<uint32_t>(getpid());
  const uint32_t c = counter.fetch_add(1);
  const uint8_t id[12] = {static_cast<uint8_t>(t >> 24),
                          static_cast<uint8_t>(t >> 16),
                          static_cast<uint8_t>(t >> 8),
                          static_cast<uint8_t>(t),
                          machine[0],
                          machine[1],
                          machine[2],
                          static_cast<uint8_t>(pid >> 8),
                          static_cast<uint8_t>(pid),
                          static_cast<uint8_t>(c >> 16),
                          static_cast<uint8_t>(c >> 8),
                          static_cast<uint8_t>(c)};
  // 96 bits as 20 base32hex characters (the last one carries 1 bit).
  std::string out(20, '0');
  uint64_t acc = 0;
  int bits = 0, pos = 0;
  for (uint8_t b : id) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out[pos++] = kAlphabet[(acc >> (bits - 5)) & 0x1F];
      bits -= 5;
    }
  }
  if (bits > 0) out[pos] = kAlphabet[(acc << (5 - bits)) & 0x1F];
  return out;
}

}  // namespace nex
