#include "crypto/xkeys.h"

#include <gtest/gtest.h>

#include <numeric>

namespace nex::crypto {
namespace {

constexpr const char* kSeedA = "SXAACAQDAQCQMBYIBEFAWDANBYHRAEISCMKBKFQXDAMRUGY4DUPB6IC6WE";
constexpr const char* kPublicA = "XAD2G7F4CQQJHSFXKXOBWEHINS2CMN2K2FVKQU7NBPP4BMVYNUOHZWPX";
constexpr const char* kSeedB = "SXAEAQKCINCEKRSHJBEUUS2MJVHE6UCRKJJVIVKWK5MFSWS3LROV4XZ47Q";
constexpr const char* kPublicB = "XB42MMPO3YN7TSMPCIBSZXVN2DT2A6JZR7DYNOEMZBDOZCNPQWSRVX6J";

TEST(XKeys, SpecKeysEncodeExactly) {
  RawKey a;
  std::iota(a.begin(), a.end(), uint8_t{0x01});
  RawKey b;
  std::iota(b.begin(), b.end(), uint8_t{0x40});
  EXPECT_EQ(XKey::from_raw_seed(a).seed(), kSeedA);
  EXPECT_EQ(XKey::from_raw_seed(a).public_key(), kPublicA);
  EXPECT_EQ(XKey::from_raw_seed(b).seed(), kSeedB);
  EXPECT_EQ(XKey::from_raw_seed(b).public_key(), kPublicB);
}

TEST(XKeys, SpecSealVector) {
  auto a = XKey::from_seed(kSeedA);
  ASSERT_TRUE(a);
  std::array<uint8_t, 24> nonce;
  nonce.fill(0x07);
  auto sealed = a->seal_with_nonce(as_bytes("hello"), kPublicB, nonce);
  ASSERT_TRUE(sealed) << sealed.error().message;
  std::string nonce_hex;
  for (int i = 0; i < 24; ++i) nonce_hex += "07";
  EXPECT_EQ(hex_encode(*sealed),
            "786b7631" + nonce_hex + "f770d7c81414828f03bbcd413a9bc212cc0b7c576e");
  auto b = XKey::from_seed(kSeedB);
  ASSERT_TRUE(b);
  auto opened = b->open(*sealed, kPublicA);
  ASSERT_TRUE(opened) << opened.error().message;
  EXPECT_EQ(as_chars(*opened), "hello");
}

TEST(XKeys, RandomKeysRoundTripAndNoncesDiffer) {
  XKey sender = XKey::create();
  XKey recipient = XKey::create();
  const std::string msg = R"({"SECRET":"s3cr3t","NATS_URL":"nats://127.0.0.1:4222"})";
  auto s1 = sender.seal(as_bytes(msg), recipient.public_key());
  auto s2 = sender.seal(as_bytes(msg), recipient.public_key());
  ASSERT_TRUE(s1 && s2);
  EXPECT_NE(*s1, *s2);  // fresh nonce each time
  EXPECT_EQ(s1->size(), 4 + 24 + 16 + msg.size());
  auto opened = recipient.open(*s1, sender.public_key());
  ASSERT_TRUE(opened);
  EXPECT_EQ(as_chars(*opened), msg);
  // Empty messages seal too.
  auto empty = sender.seal({}, recipient.public_key());
  ASSERT_TRUE(empty);
  auto opened_empty = recipient.open(*empty, sender.public_key());
  ASSERT_TRUE(opened_empty);
  EXPECT_TRUE(opened_empty->empty());
}

TEST(XKeys, MalformedOrTamperedSealsAreRefused) {
  XKey sender = XKey::create();
  XKey recipient = XKey::create();
  XKey stranger = XKey::create();
  auto sealed = sender.seal(as_bytes("environment"), recipient.public_key());
  ASSERT_TRUE(sealed);

  // Truncated: shorter than header + MAC.
  auto truncated = recipient.open(std::span(sealed->data(), 30), sender.public_key());
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(truncated.error().message.find("too short"), std::string::npos);
  // Missing a byte of ciphertext.
  EXPECT_FALSE(recipient.open(std::span(sealed->data(), sealed->size() - 1), sender.public_key()));
  // Wrong header.
  Bytes bad_header = *sealed;
  bad_header[3] = '2';
  auto header = recipient.open(bad_header, sender.public_key());
  ASSERT_FALSE(header);
  EXPECT_NE(header.error().message.find("xkv1"), std::string::npos);
  // Tampered ciphertext, tampered nonce.
  for (size_t pos : {sealed->size() - 1, size_t{10}}) {
    Bytes tampered = *sealed;
    tampered[pos] ^= 0x01;
    auto r = recipient.open(tampered, sender.public_key());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kPermissionDenied);
  }
  // Wrong recipient and wrong claimed sender.
  EXPECT_FALSE(stranger.open(*sealed, sender.public_key()));
  EXPECT_FALSE(recipient.open(*sealed, stranger.public_key()));
  // Keys of the wrong type.
  EXPECT_FALSE(XKey::from_seed("SUAACAQDAQCQMBYIBEFAWDANBYHRAEISCMKBKFQXDAMRUGY4DUPB6IC5CQ"));
  auto not_curve =
      sender.seal(as_bytes("x"), "UB43KVROR7TFJ6KAPCYRF2FJROTZAH4FHLTJLPWX4DRZCC5NASLGJBFE");
  ASSERT_FALSE(not_curve);
  EXPECT_NE(not_curve.error().message.find("recipient"), std::string::npos);
}

}  // namespace
}  // namespace nex::crypto
