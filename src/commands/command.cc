#include "commands/command.h"

#include <fmt/format.h>
#include <unistd.h>

#include <climits>

#include "api/json_fields.h"
#include "core/clock.h"
#include "core/encoding.h"
#include "crypto/digest.h"

namespace nex::commands {

using api::FieldReader;
using nlohmann::json;

const MethodInfo* find_method(std::string_view name) {
  for (const auto& m : kMethods) {
    if (name == m.name) return &m;
  }
  return nullptr;
}

Status validate_name(std::string_view name, const char* field) {
  const bool ok =
      !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
      });
  if (ok) return {};
  return fail(ErrorCode::kInvalidArgument, std::string("field '") + field +
                                               "' must be 1 to 64 of [A-Za-z0-9_-] (got '" +
                                               std::string(name) + "')");
}

std::string default_node_name() {
  char host[HOST_NAME_MAX + 1] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "nex-node";
  std::string name = host;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '-';
  }
  return name.substr(0, 64);
}

std::string command_subject(const std::string& node, bool command, const std::string& method) {
  return "$NEX.cmd." + node + (command ? ".command." : ".event.") + method;
}

std::string result_subject(const std::string& node, const std::string& id) {
  return "$NEX.cmdresult." + node + "." + id;
}

json to_json(const Command& c) {
  json j = {{"id", c.id},
            {"toNode", c.to_node},
            {"data", c.data},
            {"commandOrEvent", c.command_or_event},
            {"method", c.method},
            {"methodTimeout", c.method_timeout},
            {"retries", c.retries},
            {"ACKTimeout", c.ack_timeout},
            {"fromNode", c.from_node},
            {"sentAt", c.sent_at},
            {"issuer", c.issuer}};
  if (!c.to_nodes.empty()) j["toNodes"] = c.to_nodes;
  // Only when set: a message of older tooling keeps the bytes it was signed over.
  if (!c.expires_at.empty()) j["expiresAt"] = c.expires_at;
  if (!c.method_args.empty()) j["methodArgs"] = c.method_args;
  if (c.method == method::kDeploy) {
    j["namespace"] = c.ns;
    j["deploy"] = c.deploy;
  }
  if (!c.signature.empty()) j["signature"] = c.signature;
  return j;
}

Result<Command> parse_command_draft(const json& j, const std::string& what) {
  if (!j.is_object()) return fail(ErrorCode::kInvalidArgument, what + " must be a JSON object");
  FieldReader f(j, what);
  f.no_unknown_fields({"id", "toNode", "toNodes", "data", "commandOrEvent", "method", "methodArgs",
                       "methodTimeout", "retries", "ACKTimeout", "fromNode", "namespace", "deploy",
                       "sentAt", "expiresAt", "issuer", "signature"});
  Command c;
  f.string("id", c.id);
  f.string("toNode", c.to_node);
  f.string_list("toNodes", c.to_nodes);
  f.string_list("data", c.data);
  f.string("commandOrEvent", c.command_or_event);
  f.string("method", c.method, true);
  f.string_list("methodArgs", c.method_args);
  f.integer("methodTimeout", c.method_timeout);
  f.integer("retries", c.retries);
  f.integer("ACKTimeout", c.ack_timeout);
  f.string("fromNode", c.from_node);
  f.string("namespace", c.ns);
  if (const json* d = f.raw("deploy")) c.deploy = *d;
  f.string("sentAt", c.sent_at);
  f.string("expiresAt", c.expires_at);
  f.string("issuer", c.issuer);
  f.string("signature", c.signature);
  NEX_RETURN_IF_ERROR(f.status());
  auto bad = [&](const std::string& text) {
    return fail(ErrorCode::kInvalidArgument, what + ": " + text);
  };
  if (c.to_node.empty() && c.to_nodes.empty())
    return bad("field 'toNode' (or 'toNodes') must name the node the message is for");
  for (const auto& n : c.to_nodes) {
    if (auto st = validate_name(n, "toNodes"); !st) return bad(st.error().message);
  }
  if (!c.to_node.empty()) {
    if (auto st = validate_name(c.to_node, "toNode"); !st) return bad(st.error().message);
  }
  if (c.command_or_event != "command" && c.command_or_event != "event")
    return bad("field 'commandOrEvent' must be \"command\" or \"event\"");
  if (auto st = validate_name(c.method, "method"); !st) return bad(st.error().message);
  if (!c.id.empty()) {
    if (auto st = validate_name(c.id, "id"); !st) return bad(st.error().message);
  }
  if (c.method_timeout < 0) return bad("field 'methodTimeout' must be seconds, 0 or more");
  if (c.retries < 0 || c.retries > 100) return bad("field 'retries' must be 0 to 100");
  if (c.ack_timeout < 0) return bad("field 'ACKTimeout' must be seconds, 0 or more");
  if (c.method == method::kDeploy && !c.deploy.is_object())
    return bad("field 'deploy' must be the deploy request (an object) for method deploy");
  for (auto [value, field] : {std::pair{&c.sent_at, "sentAt"}, {&c.expires_at, "expiresAt"}}) {
    if (value->empty()) continue;
    if (auto t = parse_rfc3339(*value, field); !t) return bad(t.error().message);
  }
  return c;
}

Result<Command> parse_command(std::string_view text) {
  auto j = FieldReader::parse_object(text, "command");
  if (!j) return fail(j.error());
  auto c = parse_command_draft(*j, "command");
  if (!c) return c;
  for (auto [value, field] : {std::pair{&c->id, "id"},
                              {&c->to_node, "toNode"},
                              {&c->sent_at, "sentAt"},
                              {&c->issuer, "issuer"},
                              {&c->signature, "signature"}}) {
    if (value->empty())
      return fail(ErrorCode::kInvalidArgument,
                  std::string("command: field '") + field + "' is required");
  }
  return c;
}

namespace {

template <typename T>
std::string unsigned_bytes(const T& message) {
  json j = to_json(message);
  j.erase("signature");
  return api::dump(j);  // nlohmann objects keep their keys sorted
}

Status verify_with(const std::string& key, crypto::KeyType type, const char* key_field,
                   const std::string& signature, const std::string& bytes) {
  auto decoded = crypto::decode_public_key(type, key);
  if (!decoded)
    return fail(ErrorCode::kPermissionDenied, std::string("field '") + key_field + "' is not a " +
                                                  std::string(crypto::key_type_name(type)) +
                                                  " public key: " + decoded.error().message);
  auto sig = base64_decode(signature, Base64::kUrlNoPad);
  if (!sig || sig->size() != 64)
    return fail(ErrorCode::kPermissionDenied,
                "field 'signature' is not a base64url Ed25519 signature");
  if (auto st = crypto::verify(key, as_bytes(bytes), *sig); !st)
    return fail(
        ErrorCode::kPermissionDenied,
        std::string("the signature does not match the message and its ") + key_field + " " + key);
  return {};
}

}  // namespace

std::string signing_bytes(const Command& c) { return unsigned_bytes(c); }

void sign(Command& c, const crypto::KeyPair& issuer) {
  c.issuer = issuer.public_key();
  c.signature.clear();
  const auto sig = issuer.sign(as_bytes(signing_bytes(c)));
  c.signature = base64_encode(sig, Base64::kUrlNoPad);
}

Status verify_signature(const Command& c) {
  return verify_with(c.issuer, crypto::KeyType::kAccount, "issuer", c.signature, signing_bytes(c));
}

namespace {

using Clock = std::chrono::system_clock;

// "30 days", "36 hours", "90 s": a lifetime as a person reads it.
std::string describe(Clock::duration d) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s >= 86400 && s % 86400 == 0) return std::to_string(s / 86400) + " days";
  if (s >= 3600 && s % 3600 == 0) return std::to_string(s / 3600) + " hours";
  return std::to_string(s) + " s";
}

}  // namespace

std::optional<Refusal> check_times(const Command& c, Clock::time_point now,
                                   std::chrono::seconds retention, bool allow_unbound) {
  auto refused = [](std::string why) { return Refusal{status::kRefused, std::move(why)}; };
  auto sent = parse_rfc3339(c.sent_at, "sentAt");
  if (!sent) return refused(sent.error().message);
  if (*sent > now + kMaxClockSkew)
    return refused("sentAt " + c.sent_at + " is more than " +
                   std::to_string(kMaxClockSkew.count()) + " s ahead of this node's clock (" +
                   rfc3339_nano(now) + ")");
  if (c.expires_at.empty()) {
    if (allow_unbound) return std::nullopt;
    return refused(
        "the message has no expiresAt (older tooling), so it could be run at any time; this "
        "node takes such messages only with allow_unbound_requests in its config");
  }
  auto expires = parse_rfc3339(c.expires_at, "expiresAt");
  if (!expires) return refused(expires.error().message);
  if (*expires < *sent)
    return refused("expiresAt " + c.expires_at + " is before sentAt " + c.sent_at);
  if (*expires - *sent > retention)
    return refused("the message lives " + describe(*expires - *sent) + " (sentAt " + c.sent_at +
                   " to expiresAt " + c.expires_at + "), longer than this node keeps commands (" +
                   describe(retention) + ", commands.retention_days)");
  if (*expires <= now)
    return Refusal{status::kExpired, "expired at " + c.expires_at + ", before it ran (now " +
                                         rfc3339_nano(now) + ")"};
  return std::nullopt;
}

Status check_argv(const Command& c) {
  if (c.method != method::kCliCommand && c.method != method::kShellCommand) return {};
  const char* field = c.method_args.empty() ? "data" : "methodArgs";
  const auto& argv = c.argv();
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i].find('\0') != std::string::npos)
      return fail(ErrorCode::kInvalidArgument,
                  std::string("field '") + field + "' entry " + std::to_string(i + 1) +
                      " holds a NUL byte, which would end that argument early");
  }
  return {};
}

namespace {

// The length of the UTF-8 sequence at `s[i]` and the code point it encodes; 0 when the bytes
// there are not UTF-8 (overlong forms and surrogates included).
size_t utf8_sequence(std::string_view s, size_t i, char32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char lead = b(0);
  size_t n = lead >= 0xf0 && lead <= 0xf4 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc2 ? 2 : 0;
  if (lead >= 0xf5) n = 0;
  if (n == 0 || i + n > s.size()) return 0;
  cp = lead & (0x7f >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3f);
  }
  const char32_t min = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

}  // namespace

std::string text_log_line(std::string_view entry) {
  if (entry.ends_with('\n')) entry.remove_suffix(1);
  std::string out;
  out.reserve(entry.size());
  for (size_t i = 0; i < entry.size();) {
    const auto ch = static_cast<unsigned char>(entry[i]);
    if (ch >= 0x80) {
      char32_t cp = 0;
      const size_t n = utf8_sequence(entry, i, cp);
      if (n == 0) {
        out += fmt::format("\\x{:02x}", ch);
        ++i;
      } else {
        const bool control = cp <= 0x9f || cp == 0x2028 || cp == 0x2029;
        out += control ? fmt::format("\\u{:04x}", static_cast<uint32_t>(cp))
                       : std::string(entry.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (ch) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (ch < 0x20 || ch == 0x7f) {
          out += fmt::format("\\x{:02x}", ch);
        } else {
          out += static_cast<char>(ch);
        }
    }
    ++i;
  }
  return out;
}

json to_json(const CommandResult& r) {
  json j = {{"id", r.id},         {"node", r.node},     {"node_id", r.node_id},
            {"method", r.method}, {"status", r.status}, {"attempt", r.attempt}};
  if (!r.reason.empty()) j["reason"] = r.reason;
  if (r.exit_code) j["exit_code"] = *r.exit_code;
  if (is_final(r.status)) {
    j["stdout"] = r.stdout_text;
    j["stderr"] = r.stderr_text;
    if (r.stdout_truncated) j["stdout_truncated"] = true;
    if (r.stderr_truncated) j["stderr_truncated"] = true;
    j["ended"] = r.ended;
  }
  j["started"] = r.started;
  if (!r.signature.empty()) j["signature"] = r.signature;
  return j;
}

Result<CommandResult> parse_result(std::string_view text) {
  auto j = FieldReader::parse_object(text, "command result");
  if (!j) return fail(j.error());
  FieldReader f(*j, "command result");
  CommandResult r;
  f.string("id", r.id, true);
  f.string("node", r.node);
  f.string("node_id", r.node_id);
  f.string("method", r.method);
  f.string("status", r.status, true);
  f.string("reason", r.reason);
  std::optional<int64_t> code;
  f.optional_integer("exit_code", code);
  if (code) r.exit_code = static_cast<int>(*code);
  f.string("stdout", r.stdout_text);
  f.string("stderr", r.stderr_text);
  f.boolean("stdout_truncated", r.stdout_truncated);
  f.boolean("stderr_truncated", r.stderr_truncated);
  f.string("started", r.started);
  f.string("ended", r.ended);
  f.integer("attempt", r.attempt);
  f.string("signature", r.signature);
  NEX_RETURN_IF_ERROR(f.status());
  return r;
}

void sign(CommandResult& r, const crypto::KeyPair& node_key) {
  r.node_id = node_key.public_key();
  r.signature.clear();
  r.signature = base64_encode(node_key.sign(as_bytes(unsigned_bytes(r))), Base64::kUrlNoPad);
}

Status verify_signature(const CommandResult& r) {
  return verify_with(r.node_id, crypto::KeyType::kServer, "node_id", r.signature,
                     unsigned_bytes(r));
}

std::string result_msg_id(const CommandResult& r) {
  const auto digest = crypto::sha256(as_bytes(r.signature));
  return r.id + "." + r.node + "." + r.status + "." + std::to_string(r.attempt) + "." +
         hex_encode(std::span(digest).first(8));
}

}  // namespace nex::commands
