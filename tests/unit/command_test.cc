// The durable command messages: steward's JSON read with errors that name the field, and the
// issuer's signature, which any change to the message breaks.
#include "commands/command.h"

#include <gtest/gtest.h>

#include "core/clock.h"

namespace nex::commands {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

Command signed_command(const crypto::KeyPair& issuer) {
  Command c;
  c.id = "abc123";
  c.to_node = "ship1";
  c.method = "cliCommand";
  c.data = {"bash", "-c", "ls -l ../"};
  c.sent_at = "2026-12-03T07:27:01Z";
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

TEST(CommandTest, ExpiresAtIsSignedAndAMessageWithoutItKeepsItsOlderSignature) {
  const auto issuer = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  Command older = signed_command(issuer);  // as older tooling signed: no expiresAt
  EXPECT_FALSE(to_json(older).contains("expiresAt"));
  EXPECT_TRUE(verify_signature(*parse_command(to_json(older).dump())));

  Command c;
  c.id = "abc123";
  c.to_node = "ship1";
  c.method = "hello";
  c.sent_at = "2026-12-03T07:27:01Z";
  c.expires_at = "2026-12-04T07:27:01Z";
  sign(c, issuer);
  auto received = parse_command(to_json(c).dump());
  ASSERT_TRUE(received) << received.error().message;
  EXPECT_EQ(received->expires_at, c.expires_at);
  EXPECT_TRUE(verify_signature(*received));
  received->expires_at = "2099-12-04T07:27:01Z";
  EXPECT_FALSE(verify_signature(*received));
  received->expires_at.clear();
  EXPECT_FALSE(verify_signature(*received));
}

TEST(CommandTest, TimesThatAreNotRfc3339AreNamed) {
  auto c = parse_command_draft(
      json::parse(R"({"toNode":"a","method":"hello","expiresAt":"tomorrow"})"), "message 1");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("field 'expiresAt' must be an RFC 3339 time"), std::string::npos)
      << c.error().message;
  const auto issuer = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  Command unsent;
  unsent.id = "x";
  unsent.to_node = "a";
  unsent.method = "hello";
  sign(unsent, issuer);
  auto no_sent_at = parse_command(to_json(unsent).dump());
  ASSERT_FALSE(no_sent_at);
  EXPECT_EQ(no_sent_at.error().message, "command: field 'sentAt' is required");
}

// The node's clock `now`, and a message sent and expiring at offsets from it.
std::optional<Refusal> times(Clock::time_point now, Clock::duration sent,
                             std::optional<Clock::duration> expires, bool allow_unbound = false) {
  Command c;
  c.sent_at = rfc3339_nano(now + sent);
  if (expires) c.expires_at = rfc3339_nano(now + *expires);
  return check_times(c, now, std::chrono::hours(24 * 30), allow_unbound);
}

TEST(CommandTest, AMessageExpiresAtItsExpiresAtToTheNanosecond) {
  const Clock::time_point now = *parse_rfc3339("2026-12-03T07:27:01.5Z", "now");
  EXPECT_EQ(times(now, -1h, 1ns), std::nullopt);
  auto at = times(now, -1h, 0ns);
  ASSERT_TRUE(at);
  EXPECT_EQ(at->status, status::kExpired);
  EXPECT_NE(at->reason.find("expired at 2026-12-03T07:27:01.500000000Z"), std::string::npos)
      << at->reason;
  EXPECT_EQ(times(now, -1h, -1ns)->status, status::kExpired);
  // Sent in 2001 or any other time long past: expired, not run.
  EXPECT_EQ(times(now, -24h * 365 * 25, -24h * 365 * 25 + 24h)->status, status::kExpired);
}

TEST(CommandTest, AMessageFromTheFutureIsRefusedBeyondTheClockSkew) {
  const Clock::time_point now = *parse_rfc3339("2026-12-03T07:27:01Z", "now");
  EXPECT_EQ(times(now, kMaxClockSkew, kMaxClockSkew + 1h), std::nullopt);
  auto ahead = times(now, kMaxClockSkew + 1ns, kMaxClockSkew + 1h);
  ASSERT_TRUE(ahead);
  EXPECT_EQ(ahead->status, status::kRefused);
  EXPECT_NE(ahead->reason.find("more than 60 s ahead of this node's clock"), std::string::npos)
      << ahead->reason;
  EXPECT_EQ(times(now, 24h * 365 * 73, 24h * 365 * 73 + 1h)->status, status::kRefused);  // 2099
}

TEST(CommandTest, AMessageMayLiveAsLongAsTheNodeKeepsCommandsAndNoLonger) {
  const Clock::time_point now = *parse_rfc3339("2026-12-03T07:27:01Z", "now");
  EXPECT_EQ(times(now, 0s, 24h * 30), std::nullopt);
  auto longer = times(now, 0s, 24h * 30 + 1ns);
  ASSERT_TRUE(longer);
  EXPECT_EQ(longer->status, status::kRefused);
  EXPECT_NE(longer->reason.find("longer than this node keeps commands (30 days"), std::string::npos)
      << longer->reason;
  EXPECT_EQ(times(now, 0s, -1s)->status, status::kRefused);  // expires before it was sent
}

TEST(CommandTest, AMessageWithoutExpiresAtRunsOnlyWhereUnboundRequestsAreAllowed) {
  const Clock::time_point now = *parse_rfc3339("2026-12-03T07:27:01Z", "now");
  auto unbound = times(now, 0s, std::nullopt);
  ASSERT_TRUE(unbound);
  EXPECT_EQ(unbound->status, status::kRefused);
  EXPECT_NE(unbound->reason.find("allow_unbound_requests"), std::string::npos) << unbound->reason;
  EXPECT_EQ(times(now, 0s, std::nullopt, /*allow_unbound=*/true), std::nullopt);
  // Allowed or not, a time from the future is not.
  EXPECT_TRUE(times(now, 1h, std::nullopt, true));
}

TEST(CommandTest, ATextLogEntryIsOneLineWhateverItHolds) {
  EXPECT_EQ(text_log_line("plain words\n"), "plain words");
  EXPECT_EQ(text_log_line("a\n2026-12-03 forged line"), "a\\n2026-12-03 forged line");
  EXPECT_EQ(text_log_line("cr\rtab\tnul" + std::string(1, '\0') + "end"), "cr\\rtab\\tnul\\x00end");
  EXPECT_EQ(text_log_line("\x1b[31mred\x7f"), "\\x1b[31mred\\x7f");
  EXPECT_EQ(text_log_line("csi \xc2\x9b"
                          "2J, caf\xc3\xa9"),
            "csi \\u009b2J, caf\xc3\xa9");
  EXPECT_EQ(text_log_line("a\\nb"), "a\\\\nb");  // a backslash is not taken for an escape
  EXPECT_EQ(text_log_line("two\n\n"), "two\\n");
}

TEST(CommandTest, ANulInACommandsArgvIsRefusedNamingTheField) {
  Command c;
  c.method = method::kCliCommand;
  c.data = {"echo", std::string("a\0b", 3)};
  auto st = check_argv(c);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("field 'data' entry 2 holds a NUL byte"), std::string::npos)
      << st.error().message;
  c.method_args = {"echo", "fine", std::string("x\0", 2)};
  EXPECT_NE(check_argv(c).error().message.find("field 'methodArgs' entry 3"), std::string::npos);
  c.method_args = {"echo", "fine"};
  EXPECT_TRUE(check_argv(c));
  c.method = method::kTextLogging;  // log lines are escaped instead
  c.method_args.clear();
  EXPECT_TRUE(check_argv(c));
}

TEST(CommandTest, AResultsMsgIdComesFromItsSignature) {
  const auto node = *crypto::KeyPair::create(crypto::KeyType::kServer);
  CommandResult r{.id = "x", .node = "ship1", .status = status::kDone, .stdout_text = "ok\n"};
  sign(r, node);
  const std::string id = result_msg_id(r);
  EXPECT_TRUE(id.starts_with("x.ship1.done.1.")) << id;
  EXPECT_EQ(id.size(), std::string("x.ship1.done.1.").size() + 16);
  EXPECT_EQ(result_msg_id(r), id);  // filed again: the same id, stored once
  CommandResult other = r;
  other.stdout_text = "forged\n";
  sign(other, *crypto::KeyPair::create(crypto::KeyType::kServer));
  EXPECT_NE(result_msg_id(other), id);
}

}  // namespace
}  // namespace nex::commands
