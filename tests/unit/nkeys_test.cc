#include "crypto/nkeys.h"

#include <gtest/gtest.h>

#include <numeric>

namespace nex::crypto {
namespace {

RawKey seed_01_to_20() {
  RawKey k;
  std::iota(k.begin(), k.end(), uint8_t{1});
  return k;
}

struct Vector {
  KeyType type;
  const char* seed;
  const char* pub;
};

// docs/wire.md "NATS formats", checked against nats-io/nkeys.
const Vector kVectors[] = {
    {KeyType::kUser, "SUAACAQDAQCQMBYIBEFAWDANBYHRAEISCMKBKFQXDAMRUGY4DUPB6IC5CQ",
     "UB43KVROR7TFJ6KAPCYRF2FJROTZAH4FHLTJLPWX4DRZCC5NASLGJBFE"},
    {KeyType::kOperator, "SOAACAQDAQCQMBYIBEFAWDANBYHRAEISCMKBKFQXDAMRUGY4DUPB6IHCVI",
     "OB43KVROR7TFJ6KAPCYRF2FJROTZAH4FHLTJLPWX4DRZCC5NASLGIT25"},
    {KeyType::kAccount, "SAAACAQDAQCQMBYIBEFAWDANBYHRAEISCMKBKFQXDAMRUGY4DUPB6IFO3A",
     "AB43KVROR7TFJ6KAPCYRF2FJROTZAH4FHLTJLPWX4DRZCC5NASLGIFW3"},
};

TEST(NKeys, SpecVectorsEncodeExactly) {
  for (const auto& v : kVectors) {
    auto kp = KeyPair::from_raw_seed(v.type, seed_01_to_20());
    ASSERT_TRUE(kp) << kp.error().message;
    EXPECT_EQ(kp->seed(), v.seed);
    EXPECT_EQ(kp->public_key(), v.pub);
  }
}

TEST(NKeys, SpecVectorsDecodeFromSeed) {
  for (const auto& v : kVectors) {
    auto kp = KeyPair::from_seed(v.seed);
    ASSERT_TRUE(kp) << kp.error().message;
    EXPECT_EQ(kp->type(), v.type);
    EXPECT_EQ(kp->public_key(), v.pub);
  }
}

TEST(NKeys, SpecSignatureVector) {
  auto kp = KeyPair::from_seed(kVectors[0].seed);
  ASSERT_TRUE(kp);
  const auto sig = kp->sign(as_bytes("nonce123"));
  EXPECT_EQ(hex_encode(sig),
            "db77fa0d01d38fba89326118c4843beb5ef77ab0d83dd7949d02ef3df23cf3bb"
            "bfbab35cb16ebbb10104b02511962688b049ee24b9362cee7f4ce0a55e02e706");
  EXPECT_TRUE(verify(kp->public_key(), as_bytes("nonce123"), sig));
}

TEST(NKeys, EveryTypeRoundTrips) {
  const std::pair<KeyType, char> types[] = {{KeyType::kServer, 'N'},
                                            {KeyType::kCluster, 'C'},
                                            {KeyType::kOperator, 'O'},
                                            {KeyType::kAccount, 'A'},
                                            {KeyType::kUser, 'U'}};
  for (auto [type, letter] : types) {
    auto kp = KeyPair::create(type);
    ASSERT_TRUE(kp);
    const std::string pub = kp->public_key();
    const std::string seed = kp->seed();
    EXPECT_EQ(pub.size(), 56u);
    EXPECT_EQ(seed.size(), 58u);
    EXPECT_EQ(pub[0], letter);
    EXPECT_EQ(seed[0], 'S');
    EXPECT_EQ(seed[1], letter);
    auto decoded = decode_public_key(pub);
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded->type, type);
    EXPECT_EQ(decoded->key, kp->raw_public_key());
    auto again = KeyPair::from_seed(seed);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->public_key(), pub);
  }
}

TEST(NKeys, PrivateAndCurveEncodings) {
  const RawKey raw = seed_01_to_20();
  const std::string priv = encode_key(KeyType::kPrivate, raw);
  EXPECT_EQ(priv[0], 'P');
  auto back = decode_key(KeyType::kPrivate, priv);
  ASSERT_TRUE(back);
  EXPECT_TRUE(std::equal(back->begin(), back->end(), raw.begin()));
  const std::string curve_seed = encode_seed(KeyType::kCurve, raw);
  EXPECT_EQ(curve_seed.substr(0, 2), "SX");
  auto decoded = decode_seed(curve_seed);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->type, KeyType::kCurve);
  // A curve seed is not a signing key.
  auto kp = KeyPair::from_seed(curve_seed);
  ASSERT_FALSE(kp);
  EXPECT_NE(kp.error().message.find("curve"), std::string::npos);
}

TEST(NKeys, VerifyRejectsTamperedMessageAndSignature) {
  auto kp = KeyPair::create(KeyType::kAccount);
  ASSERT_TRUE(kp);
  auto sig = kp->sign(as_bytes("payload"));
  EXPECT_FALSE(verify(kp->public_key(), as_bytes("payloaD"), sig));
  sig[10] ^= 1;
  auto st = verify(kp->public_key(), as_bytes("payload"), sig);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kPermissionDenied);
  EXPECT_FALSE(verify(kp->public_key(), as_bytes("payload"), std::span(sig.data(), 63)));
}

TEST(NKeys, MalformedInputIsAClearError) {
  const std::string pub = kVectors[0].pub;
  // Bad base32 (lower case and '1' are outside the alphabet).
  auto bad = decode_public_key("ub43kvror7tfj6kapcyrf2fjrotzah4fhltjlpwx4drzcc5naslgjbfe");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("base32"), std::string::npos);
  // Wrong CRC: change one character in the middle.
  std::string flipped = pub;
  flipped[20] = flipped[20] == 'A' ? 'B' : 'A';
  auto crc = decode_public_key(flipped);
  ASSERT_FALSE(crc);
  EXPECT_NE(crc.error().message.find("checksum"), std::string::npos);
  // Wrong prefix for the expected type.
  auto wrong = decode_public_key(KeyType::kAccount, pub);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("expected a account key, got user"), std::string::npos);
  // A seed where a public key is expected, and the other way round.
  EXPECT_FALSE(decode_public_key(kVectors[0].seed));
  EXPECT_FALSE(decode_seed(pub));
  EXPECT_FALSE(KeyPair::from_seed(pub));
  // Truncated and empty.
  EXPECT_FALSE(decode_public_key(pub.substr(0, 40)));
  EXPECT_FALSE(decode_public_key(""));
  EXPECT_FALSE(KeyPair::from_seed(""));
  // Curve keys do not verify signatures.
  EXPECT_FALSE(verify("XAD2G7F4CQQJHSFXKXOBWEHINS2CMN2K2FVKQU7NBPP4BMVYNUOHZWPX", as_bytes("x"),
                      Signature{}));
}

}  // namespace
}  // namespace nex::crypto
