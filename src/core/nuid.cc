#include "core/nuid.h"

#include <sodium.h>

#include "core/sodium.h"

#include <cstdint>
#include <mutex>

namespace nex {
namespace {

constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr int kBase = 62;
constexpr int kPrefixLen = 12;
constexpr int kSeqLen = 10;
constexpr int64_t kMaxSeq = 839299365868340224LL;  // 62^10
constexpr int64_t kMinInc = 33;
constexpr int64_t kMaxInc = 333;

int64_t random_below(int64_t bound) {
  uint64_t r = 0;
  randombytes_buf(&r, sizeof r);
  return static_cast<int64_t>(r % static_cast<uint64_t>(bound));
}

class Nuid {
 public:
  Nuid() { reset(); }

  std::string next() {
    seq_ += inc_;
    if (seq_ >= kMaxSeq) reset();
    std::string out = prefix_;
    out.resize(kPrefixLen + kSeqLen);
    int64_t l = seq_;
    for (int i = kPrefixLen + kSeqLen - 1; i >= kPrefixLen; --i) {
      out[i] = kDigits[l % kBase];
      l /= kBase;
    }
    return out;
  }

 private:
  void reset() {
    ensure_sodium();
    prefix_.resize(kPrefixLen);
    for (char& c : prefix_) c = kDigits[random_below(kBase)];
    seq_ = random_below(kMaxSeq);
    inc_ = kMinInc + random_below(kMaxInc - kMinInc);
  }

  std::string prefix_;
  int64_t seq_ = 0;
  int64_t inc_ = 0;
};

}  // namespace

std::string next_nuid() {
  static std::mutex mu;
  static Nuid nuid;
  std::lock_guard lock(mu);
  return nuid.next();
}

}  // namespace nex
