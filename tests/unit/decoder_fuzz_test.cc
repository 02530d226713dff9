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
  auto original = crypto::decode_jwt(token);
  ASSERT_TRUE(original) << original.error().message;
  Mutator m(3);
  int refused = 0;
  for (int i = 0; i < kIterations; ++i) {
    const std::string mt = m.mutate(token);
    if (auto d = crypto::decode_jwt(mt); d) {
      // Base64 can have several spellings of the same bytes only in its last character's
      // unused bits; the claims and signature must be the original ones.
      EXPECT_EQ(d->claims.sub, "svc");
      EXPECT_EQ(d->claims.iss, issuer->public_key());
      EXPECT_EQ(d->claims.nats, original->claims.nats);
      EXPECT_EQ(d->claims.iat, original->claims.iat);
    } else {
      ++refused;
      EXPECT_FALSE(d.error().message.empty()) << mt;
    }
  }
  // Almost every edit breaks the signature: only a mutant equal to the token, or spelling its
  // last character's unused bits otherwise, may decode.
  EXPECT_GT(refused, kIterations * 9 / 10);
}

// What a decoder did with its inputs: an input it refused must say why.
struct Outcomes {
  int decoded = 0;
  int refused = 0;
  template <typename T>
  bool record(const Result<T>& r, const std::string& input) {
    if (r) {
      ++decoded;
      return true;
    }
    ++refused;
    EXPECT_FALSE(r.error().message.empty()) << "refused without a reason: " << input;
    return false;
  }
};

// Random text, half of it in the decoders' own alphabets so that it also decodes: whatever
// decodes encodes back to text that decodes to the same bytes; nothing else decodes.
TEST(DecoderFuzz, RandomBytesIntoTextDecoders) {
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz234567-_=";
  std::mt19937 rng(4);
  Outcomes b32, b64url, b64std;
  for (int i = 0; i < kIterations; ++i) {
    std::string s(rng() % 80, '\0');
    const bool in_alphabet = i % 2 == 0;
    for (char& c : s)
      c = in_alphabet ? kAlphabet[rng() % kAlphabet.size()] : static_cast<char>(rng());
    if (auto d = base32_decode(s); b32.record(d, s)) {
      auto again = base32_decode(base32_encode(*d));
      ASSERT_TRUE(again) << s;
      EXPECT_EQ(*again, *d) << s;
    }
    for (auto [variant, outcomes] :
         {std::pair{Base64::kUrl, &b64url}, std::pair{Base64::kStandardNoPad, &b64std}}) {
      if (auto d = base64_decode(s, variant); outcomes->record(d, s)) {
        auto again = base64_decode(base64_encode(*d, variant), variant);
        ASSERT_TRUE(again) << s;
        EXPECT_EQ(*again, *d) << s;
      }
    }
    // A seed carries a checksum and a JWT a signature: random text is neither.
    EXPECT_FALSE(crypto::decode_seed(s)) << s;
    EXPECT_FALSE(crypto::decode_jwt(s)) << s;
    EXPECT_FALSE(nats::object_info_from_json(s)) << s;
  }
  // Both ways were taken, so the properties above were checked.
  for (const Outcomes* o : {&b32, &b64url, &b64std}) {
    EXPECT_GT(o->decoded, 0);
    EXPECT_GT(o->refused, 0);
  }
}

// Mutated metadata either reads as metadata that writes back to the same JSON, or is refused
// with a reason; the original reads back as what was written.
TEST(DecoderFuzz, ObjectMetadata) {
  nats::ObjectInfo info{
      .name = "n", .bucket = "b", .nuid = "x", .size = 3, .chunks = 1, .digest = "SHA-256=abc"};
  const std::string json = nats::object_info_to_json(info);
  auto original = nats::object_info_from_json(json);
  ASSERT_TRUE(original) << original.error().message;
  EXPECT_EQ(nats::object_info_to_json(*original), json);
  Mutator m(5);
  Outcomes outcomes;
  for (int i = 0; i < kIterations; ++i) {
    const std::string mutated = m.mutate(json);
    if (auto d = nats::object_info_from_json(mutated); outcomes.record(d, mutated)) {
      const std::string written = nats::object_info_to_json(*d);
      auto again = nats::object_info_from_json(written);
      ASSERT_TRUE(again) << written;
      EXPECT_EQ(nats::object_info_to_json(*again), written) << mutated;
    }
  }
  EXPECT_GT(outcomes.decoded, 0);
  EXPECT_GT(outcomes.refused, 0);
}

}  // namespace
}  // namespace nex
