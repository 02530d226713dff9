// A node's record in the NEX_NODES directory: what its node signed verifies, under its own name
// only; any change to it, or a record under another name, does not.
#include "commands/store.h"

#include <gtest/gtest.h>

#include "crypto/xkeys.h"

namespace nex::commands {
namespace {

NodeRecord signed_record(const crypto::KeyPair& node) {
  NodeRecord r{
      .name = "edge1", .xkey = crypto::XKey::create().public_key(), .tags = {{"site", "north"}}};
  sign(r, node);
  return r;
}

TEST(NodeRecordTest, ARecordItsNodeSignedVerifiesUnderItsName) {
  const auto node = *crypto::KeyPair::create(crypto::KeyType::kServer);
  const NodeRecord r = signed_record(node);
  EXPECT_EQ(r.id, node.public_key());
  EXPECT_TRUE(verify_record(r, "edge1"));
  auto copied = verify_record(r, "edge2");  // filed under another node's name
  ASSERT_FALSE(copied);
  EXPECT_NE(copied.error().message.find("it names node 'edge1'"), std::string::npos);
}

TEST(NodeRecordTest, AnyChangeOrAnotherSignerIsNotItsNodes) {
  const auto node = *crypto::KeyPair::create(crypto::KeyType::kServer);
  const auto other = *crypto::KeyPair::create(crypto::KeyType::kServer);
  for (auto change : std::vector<std::function<void(NodeRecord&)>>{
           [](NodeRecord& r) { r.xkey = crypto::XKey::create().public_key(); },
           [](NodeRecord& r) { r.tags["site"] = "south"; },
           [&](NodeRecord& r) { r.id = other.public_key(); },
           [](NodeRecord& r) { r.signature.clear(); },
           [&](NodeRecord& r) {  // another key signs a record claiming the node's id
             const std::string id = r.id;
             sign(r, other);
             r.id = id;
           },
           [](NodeRecord& r) {  // an account key is not a node
             sign(r, *crypto::KeyPair::create(crypto::KeyType::kAccount));
           }}) {
    NodeRecord r = signed_record(node);
    change(r);
    EXPECT_FALSE(verify_record(r, "edge1")) << to_json(r).dump();
  }
}

}  // namespace
}  // namespace nex::commands
