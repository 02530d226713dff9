// The durable command messages: steward's JSON read with errors that name the field, and the
// issuer's signature, which any change to the message breaks.
#include "commands/command.h"

#include <gtest/gtest.h>

namespace nex::commands {
namespace {

using nlohmann::json;

Command signed_command(const crypto::KeyPair& issuer) {
  Command c;
  c.id = "abc123";
  c.to_node = "ship1";
  c.method = "cliCommand";
  c.data = {"bash", "-c", "ls -l ../"};
  sign(c, issuer);
  return c;
}

TEST(CommandTest, ASignedCommandVerifiesAfterTheWireAndAnyChangeBreaksIt) {
  const auto issuer = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  const Command c = signed_command(issuer);
  auto received = parse_command(to_json(c).dump());
  ASSERT_TRUE(received) << received.error().message;
  EXPECT_TRUE(verify_signature(*received));
  EXPECT_EQ(received->issuer, issuer.public_key());

  for (auto change : std::vector<std::function<void(Command&)>>{
           [](Command& m) { m.data.back() = "rm -rf /"; }, [](Command& m) { m.to_node = "ship2"; },
           [](Command& m) { m.method_timeout = 3600; }, [](Command& m) { m.id = "other"; },
           [](Command& m) {
             m.issuer = crypto::KeyPair::create(crypto::KeyType::kAccount)->public_key();
           }}) {
    Command tampered = *received;
    change(tampered);
    EXPECT_FALSE(verify_signature(tampered)) << to_json(tampered).dump();
  }
}

TEST(CommandTest, TheSeedsMessageIsADraftAndANodeNeedsItSigned) {
  const json seed = json::parse(R"({
        "toNode": "ship1",
        "data": ["bash","-c","ls -l ../"],
        "commandOrEvent":"command",
        "method":"shellCommand"
  })");
  auto draft = parse_command_draft(seed, "message 1");
  ASSERT_TRUE(draft) << draft.error().message;
  EXPECT_EQ(draft->argv(), (std::vector<std::string>{"bash", "-c", "ls -l ../"}));
  auto unsigned_msg = parse_command(seed.dump());
  ASSERT_FALSE(unsigned_msg);
  EXPECT_EQ(unsigned_msg.error().message, "command: field 'id' is required");
}

TEST(CommandTest, BadFieldsAreNamed) {
  auto check = [](const std::string& text, const std::string& expected) {
    auto c = parse_command_draft(json::parse(text), "message 1");
    ASSERT_FALSE(c) << text;
    EXPECT_NE(c.error().message.find(expected), std::string::npos) << c.error().message;
  };
  check(R"({"method":"hello"})", "field 'toNode' (or 'toNodes') must name the node");
  check(R"({"toNode":"a.b","method":"hello"})", "field 'toNode' must be 1 to 64 of [A-Za-z0-9_-]");
  check(R"({"toNode":"a","method":"hello","commandOrEvent":"query"})",
        "field 'commandOrEvent' must be \"command\" or \"event\"");
  check(R"({"toNode":"a","method":"hello","retries":-1})", "field 'retries' must be 0 to 100");
  check(R"({"toNode":"a","method":"hello","data":"ls"})", "field 'data'");
  check(R"({"toNode":"a","method":"hello","colour":"red"})", "colour");
  check(R"({"toNode":"a","method":"deploy"})", "field 'deploy' must be the deploy request");
}

TEST(CommandTest, AResultIsSignedByItsNode) {
  const auto node = *crypto::KeyPair::create(crypto::KeyType::kServer);
  CommandResult r{.id = "x", .node = "ship1", .status = status::kDone, .stdout_text = "ok\n"};
  sign(r, node);
  EXPECT_EQ(r.node_id, node.public_key());
  auto back = parse_result(to_json(r).dump());
  ASSERT_TRUE(back);
  EXPECT_TRUE(verify_signature(*back));
  back->stdout_text = "forged\n";
  EXPECT_FALSE(verify_signature(*back));
  back = parse_result(to_json(r).dump());
  back->node_id = crypto::KeyPair::create(crypto::KeyType::kServer)->public_key();
  EXPECT_FALSE(verify_signature(*back));
}

TEST(CommandTest, ResultsRoundTrip) {
  CommandResult r{.id = "x",
                  .node = "ship1",
                  .node_id = "N",
                  .method = "cliCommand",
                  .status = status::kDone,
                  .exit_code = 0,
                  .stdout_text = "hi\n",
                  .stdout_truncated = true,
                  .started = "s",
                  .ended = "e",
                  .attempt = 2};
  auto back = parse_result(to_json(r).dump());
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->stdout_text, "hi\n");
  EXPECT_TRUE(back->stdout_truncated);
  EXPECT_EQ(back->attempt, 2);
  EXPECT_EQ(back->exit_code, 0);
}

}  // namespace
}  // namespace nex::commands
