// Randomized robustness tests for every decoder that reads untrusted input: random mutations of
// valid inputs must either decode to exactly the original meaning or fail with an error, and
// never crash (run under sanitizers, this is a poor man's fuzzer with a fixed, repeatable seed).
#include <gtest/gtest.h>

#include <random>

#include "crypto/jwt.h"
#include "crypto/nkeys.h"
#include "crypto/xkeys.h"
#include "nats/object_store.h"

namespace nex {
namespace {

constexpr int kIterations = 20000;

class Mutator {
 public:
  explicit Mutator(uint32_t seed) : rng_(seed) {}

  std::string mutate(std::string s) {
    const int edits = 1 + static_cast<int>(rng_() % 3);
    for (int e = 0; e < edits; ++e) {
      switch (rng_() % 5) {
        case 0:  // replace a byte
          if (!s.empty()) s[rng_() % s.size()] = static_cast<char>(rng_());
          break;
        case 1:  // flip a bit
          if (!s.empty()) s[rng_() % s.size()] ^= static_cast<char>(1 << (rng_() % 8));
          break;
        case 2:  // delete a byte
          if (!s.empty()) s.erase(rng_() % s.size(), 1);
          break;
        case 3:  // insert a byte
          s.insert(s.begin() + static_cast<long>(rng_() % (s.size() + 1)),
                   static_cast<char>(rng_()));
          break;
        case 4:  // truncate
          s.resize(rng_() % (s.size() + 1));
          break;
      }
    }
    return s;
  }

 private:
  std::mt19937 rng_;
};

TEST(DecoderFuzz, PublicKeysAndSeeds) {
  auto kp = crypto::KeyPair::create(crypto::KeyType::kUser);
  ASSERT_TRUE(kp);
  const std::string pub = kp->public_key();
  const std::string seed = kp->seed();
  Mutator m(1);
  for (int i = 0; i < kIterations; ++i) {
    const std::string mp = m.mutate(pub);
    if (auto d = crypto::decode_public_key(mp); d) {
      EXPECT_EQ(mp, pub) << "a mutated key decoded";
    }
    const std::string ms = m.mutate(seed);
    if (auto k = crypto::KeyPair::from_seed(ms); k) {
      EXPECT_EQ(k->public_key(), pub) << "a mutated seed decoded to another key";
    }
  }
}

TEST(DecoderFuzz, XkeySeals) {
  auto sender = crypto::XKey::create();
  auto recipient = crypto::XKey::create();
  auto sealed = sender.seal(as_bytes("{\"KEY\":\"value\"}"), recipient.public_key());
  ASSERT_TRUE(sealed);
  const std::string original(as_chars(*sealed));
  Mutator m(2);
  for (int i = 0; i < kIterations; ++i) {
    const std::string ms = m.mutate(original);
    if (auto opened = recipient.open(as_bytes(ms), sender.public_key()); opened) {
      EXPECT_EQ(ms, original) << "a tampered seal opened";
    }
  }
}

TEST(DecoderFuzz, Jwts) {
  auto issuer = crypto::KeyPair::create(crypto::KeyType::kAccount);
  ASSERT_TRUE(issuer);
  const std::string token = crypto::encode_jwt({.sub = "svc", .nats = {{"hash", "h"}}}, *issuer);
  Mutator m(3);
  for (int i = 0; i < kIterations; ++i) {
    const std::string mt = m.mutate(token);
    if (auto d = crypto::decode_jwt(mt); d) {
      // Base64 can have several spellings of the same bytes only in its last character's
      // unused bits; the claims and signature must be the original ones.
      EXPECT_EQ(d->claims.sub, "svc");
      EXPECT_EQ(d->claims.iss, issuer->public_key());
    }
  }
}

TEST(DecoderFuzz, RandomBytesIntoTextDecoders) {
  std::mt19937 rng(4);
  for (int i = 0; i < kIterations; ++i) {
    std::string s(rng() % 80, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    (void)base32_decode(s);
    (void)base64_decode(s, Base64::kUrl);
    (void)base64_decode(s, Base64::kStandardNoPad);
    (void)crypto::decode_seed(s);
    (void)crypto::decode_jwt(s);
    (void)nats::object_info_from_json(s);
  }
}

TEST(DecoderFuzz, ObjectMetadata) {
  nats::ObjectInfo info{
      .name = "n", .bucket = "b", .nuid = "x", .size = 3, .chunks = 1, .digest = "SHA-256=abc"};
  const std::string json = nats::object_info_to_json(info);
  Mutator m(5);
  for (int i = 0; i < kIterations; ++i) (void)nats::object_info_from_json(m.mutate(json));
}

}  // namespace
}  // namespace nex
