#include "commands/sender.h"

#include <map>
#include <thread>

#include "api/json_fields.h"
#include "core/clock.h"
#include "core/nuid.h"

namespace nex::commands {

using namespace std::chrono_literals;

Result<std::vector<Command>> send_command(const nats::JetStream& js, Command draft,
                                          const crypto::KeyPair& issuer,
                                          std::chrono::milliseconds retry_for) {
  if (draft.id.empty()) draft.id = next_nuid();
  if (draft.from_node.empty()) draft.from_node = default_node_name();
  draft.sent_at = rfc3339_nano(std::chrono::system_clock::now());
  const std::vector<std::string> nodes =
      draft.to_nodes.empty() ? std::vector<std::string>{draft.to_node} : draft.to_nodes;
  const auto deadline = std::chrono::steady_clock::now() + retry_for;
  std::vector<Command> sent;
  for (const auto& node : nodes) {
    Command c = draft;
    c.to_node = node;
    sign(c, issuer);
    auto msg = nats::Message::create(command_subject(node, c.is_command(), c.method),
                                     api::dump(to_json(c)));
    if (!msg) return fail(msg.error());
    NEX_RETURN_IF_ERROR(msg->set_header("Nats-Msg-Id", c.id + "." + node));
    auto backoff = 100ms;
    for (;;) {
      auto ack = js.publish(*msg);
      if (ack) break;
      if (std::chrono::steady_clock::now() + backoff >= deadline)
        return fail(ack.error().wrap("command " + c.id + " for " + node + " was not filed"));
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2s));
    }
    sent.push_back(std::move(c));
  }
  return sent;
}

namespace {

// Calls `each` for every message on `filter` of `stream` filed since `since_ns`.
Status read_stream(const nats::JetStream& js, const std::string& stream, const std::string& filter,
                   int64_t since_ns,
                   const std::function<void(const nats::Message&, int64_t)>& each) {
  auto sub = since_ns > 0 ? js.ordered_consumer(stream, filter, js_DeliverByStartTime, since_ns)
                          : js.ordered_consumer(stream, filter);
  if (!sub) return std::unexpected(sub.error());
  auto total = js.backlog(*sub);
  if (!total) return std::unexpected(total.error());
  for (uint64_t i = 0; i < *total; ++i) {
    auto m = sub->next(js.timeout());
    if (!m) return std::unexpected(m.error().wrap("reading stream " + stream));
    auto meta = nats::JetStream::metadata(*m);
    each(*m, meta ? meta->timestamp_ns : 0);
    if (meta && meta->num_pending == 0) break;
  }
  return {};
}

}  // namespace

Result<std::vector<Filed>> read_commands(const nats::JetStream& js, const std::string& filter,
                                         int64_t since_ns) {
  std::vector<Filed> out;
  NEX_RETURN_IF_ERROR(
      read_stream(js, kCommandStream, filter, since_ns, [&](const nats::Message& m, int64_t ts) {
        if (auto c = parse_command(m.data())) out.push_back({std::move(*c), ts});
      }));
  return out;
}

Result<std::vector<FiledResult>> read_results(const nats::JetStream& js, const std::string& filter,
                                              int64_t since_ns) {
  std::vector<FiledResult> out;
  NEX_RETURN_IF_ERROR(
      read_stream(js, kResultStream, filter, since_ns, [&](const nats::Message& m, int64_t ts) {
        if (auto r = parse_result(m.data())) out.push_back({std::move(*r), ts});
      }));
  return out;
}

Result<std::vector<CommandResult>> wait_for_results(
    const nats::JetStream& js, const std::string& id, const std::vector<std::string>& nodes,
    std::chrono::steady_clock::time_point deadline,
    const std::function<void(const CommandResult&)>& on_result) {
  std::map<std::string, CommandResult> latest;
  auto done = [&] {
    for (const auto& n : nodes) {
      auto it = latest.find(n);
      if (it == latest.end() || !is_final(it->second.status)) return false;
    }
    return true;
  };
  std::optional<nats::SyncSubscription> sub;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    if (!sub) {
      auto s = js.ordered_consumer(kResultStream, "$NEX.cmdresult.*." + id);
      if (!s) {  // the server is away: try again until the deadline
        std::this_thread::sleep_for(200ms);
        continue;
      }
      sub = std::move(*s);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto m = sub->next(std::max(left, 1ms));
    if (!m) {
      if (m.error().code != ErrorCode::kTimeout) sub.reset();
      continue;
    }
    auto r = parse_result(m->data());
    if (!r) continue;
    auto it = latest.find(r->node);
    // A later attempt's `received` does not hide an earlier final result.
    if (it != latest.end() && is_final(it->second.status) && !is_final(r->status)) continue;
    if (on_result) on_result(*r);
    latest[r->node] = std::move(*r);
  }
  std::vector<CommandResult> out;
  for (const auto& n : nodes) {
    if (auto it = latest.find(n); it != latest.end()) out.push_back(it->second);
  }
  return out;
}

}  // namespace nex::commands
