#include "commands/sender.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <thread>

#include "api/json_fields.h"
#include "commands/store.h"
#include "core/clock.h"
#include "core/nuid.h"

namespace nex::commands {

using namespace std::chrono_literals;

Result<std::vector<Signed>> sign_for_nodes(Command draft, const crypto::KeyPair& issuer,
                                           std::chrono::seconds lifetime) {
  NEX_RETURN_IF_ERROR(check_argv(draft));
  if (draft.id.empty()) draft.id = next_nuid();
  if (draft.from_node.empty()) draft.from_node = default_node_name();
  const auto now = std::chrono::system_clock::now();
  draft.sent_at = rfc3339_nano(now);
  if (draft.expires_at.empty()) draft.expires_at = rfc3339_nano(now + lifetime);
  const std::vector<std::string> nodes =
      draft.to_nodes.empty() ? std::vector<std::string>{draft.to_node} : draft.to_nodes;
  std::vector<Signed> out;
  for (const auto& node : nodes) {
    Command c = draft;
    c.to_node = node;
    sign(c, issuer);
    auto msg = nats::Message::create(command_subject(node, c.is_command(), c.method),
                                     api::dump(to_json(c)));
    if (!msg) return fail(msg.error());
    NEX_RETURN_IF_ERROR(msg->set_header("Nats-Msg-Id", c.id + "." + node));
    out.push_back({std::move(c), std::move(*msg)});
  }
  return out;
}

std::chrono::seconds default_lifetime(const nats::JetStream& js) {
  auto info = js.stream_info(kCommandStream);
  if (!info || info->config.max_age <= std::chrono::nanoseconds::zero()) return kDefaultRetention;
  return std::chrono::duration_cast<std::chrono::seconds>(info->config.max_age);
}

Result<std::vector<Command>> send_command(const nats::JetStream& js, Command draft,
                                          const crypto::KeyPair& issuer,
                                          std::chrono::milliseconds retry_for,
                                          std::optional<std::chrono::seconds> lifetime) {
  auto signed_msgs =
      sign_for_nodes(std::move(draft), issuer, lifetime ? *lifetime : default_lifetime(js));
  if (!signed_msgs) return fail(signed_msgs.error());
  const auto deadline = std::chrono::steady_clock::now() + retry_for;
  std::vector<Command> sent;
  for (auto& s : *signed_msgs) {
    auto backoff = 100ms;
    for (;;) {
      auto ack = js.publish(s.message);
      if (ack) break;
      if (std::chrono::steady_clock::now() + backoff >= deadline)
        return fail(ack.error().wrap("command " + s.command.id + " for " + s.command.to_node +
                                     " was not filed"));
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2s));
    }
    sent.push_back(std::move(s.command));
  }
  return sent;
}

Status for_each_filed(const nats::JetStream& js, const std::string& stream,
                      const std::string& filter, int64_t since_ns,
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

Result<std::vector<Filed>> read_commands(const nats::JetStream& js, const std::string& filter,
                                         int64_t since_ns) {
  std::vector<Filed> out;
  NEX_RETURN_IF_ERROR(
      for_each_filed(js, kCommandStream, filter, since_ns, [&](const nats::Message& m, int64_t ts) {
        if (auto c = parse_command(m.data())) out.push_back({std::move(*c), ts});
      }));
  return out;
}

Status ResultVerifier::check(const CommandResult& r) {
  NEX_RETURN_IF_ERROR(verify_signature(r));
  auto it = holders_.find(r.node);
  if (it == holders_.end()) {
    std::string warning;
    auto records = signed_records(js_, r.node, &warning);
    if (!warning.empty() && warn_) warn_(warning);
    Result<std::vector<std::string>> ids = std::vector<std::string>{};
    if (!records) ids = fail(records.error());
    for (const auto& rec : records.value_or(std::vector<NodeRecord>{})) ids->push_back(rec.id);
    it = holders_.emplace(r.node, std::move(ids)).first;
  }
  if (!it->second)
    return fail(ErrorCode::kPermissionDenied,
                "a result for " + r.id + " claims node " + r.node +
                    ", whose id cannot be checked: " + it->second.error().message);
  const auto& ids = *it->second;
  if (std::find(ids.begin(), ids.end(), r.node_id) == ids.end())
    return fail(ErrorCode::kPermissionDenied, "a result for " + r.id + " claims node " + r.node +
                                                  ", which is " + ids.front() + ", not " +
                                                  r.node_id);
  return {};
}

Result<std::vector<FiledResult>> read_results(const nats::JetStream& js, const std::string& filter,
                                              int64_t since_ns, size_t* rejected) {
  std::vector<FiledResult> out;
  ResultVerifier verifier(js);
  NEX_RETURN_IF_ERROR(
      for_each_filed(js, kResultStream, filter, since_ns, [&](const nats::Message& m, int64_t ts) {
        auto r = parse_result(m.data());
        if (r && verifier.check(*r)) {
          out.push_back({std::move(*r), ts});
        } else if (rejected != nullptr) {
          ++*rejected;
        }
      }));
  return out;
}

Result<ResultWatch> ResultWatch::start(const nats::JetStream& js, const std::string& id) {
  auto sub = js.connection().subscribe_sync("$NEX.cmdresult.*." + id);
  if (!sub) return fail(sub.error());
  NEX_RETURN_IF_ERROR(js.connection().flush());
  return ResultWatch(js, id, std::move(*sub));
}

ResultWatch::ResultWatch(nats::JetStream js, std::string id, nats::SyncSubscription sub)
    : js_(js),
      verifier_(std::move(js),
                [warned = warned_](const std::string& w) {
                  if (warned->insert(w).second) std::fprintf(stderr, "nex: %s\n", w.c_str());
                }),
      id_(std::move(id)),
      sub_(std::move(sub)) {}

void ResultWatch::read_filed(const std::string& node) {
  // The newest first: when it is the node's final word, nothing else needs reading.
  auto last = js_.last_message(kResultStream, result_subject(node, id_));
  if (!last) return;
  if (auto r = parse_result(last->data()); r && is_final(r->status) && verifier_.check(*r)) {
    take(std::move(*r));
    return;
  }
  (void)for_each_filed(js_, kResultStream, result_subject(node, id_), 0,
                       [&](const nats::Message& m, int64_t) {
                         if (auto r = parse_result(m.data())) take(std::move(*r));
                       });
}

void ResultWatch::take(CommandResult r) {
  if (auto st = verifier_.check(r); !st) {
    if (warned_->insert(st.error().message).second)
      std::fprintf(stderr, "nex: ignored a result: %s\n", st.error().message.c_str());
    return;
  }
  auto it = latest_.find(r.node);
  // A `received` arriving late never hides the final result.
  if (it != latest_.end() && is_final(it->second.status) && !is_final(r.status)) return;
  latest_[r.node] = std::move(r);
}

std::vector<CommandResult> ResultWatch::wait(const std::vector<std::string>& nodes,
                                             std::chrono::steady_clock::time_point deadline) {
  auto missing = [&] {
    std::vector<std::string> out;
    for (const auto& n : nodes) {
      auto it = latest_.find(n);
      if (it == latest_.end() || !is_final(it->second.status)) out.push_back(n);
    }
    return out;
  };
  // What the stream holds for the nodes still missing: filed before this watch, or while its
  // connection was down.
  auto read_missing = [&] {
    for (const auto& n : missing()) read_filed(n);
  };
  auto last_read = std::chrono::steady_clock::now();
  while (!missing().empty()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    auto m =
        sub_.next(std::min(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now),
                           std::chrono::milliseconds(1s)));
    if (m) {
      if (auto r = parse_result(m->data())) take(std::move(*r));
    } else if (m.error().code != ErrorCode::kTimeout) {
      std::this_thread::sleep_for(100ms);  // the connection is away; it reconnects
    }
    if (std::chrono::steady_clock::now() - last_read >= 1s) {
      read_missing();
      last_read = std::chrono::steady_clock::now();
    }
  }
  if (!missing().empty()) read_missing();
  std::vector<CommandResult> out;
  for (const auto& n : nodes) {
    if (auto it = latest_.find(n); it != latest_.end()) out.push_back(it->second);
  }
  return out;
}

Result<std::vector<CommandResult>> wait_for_results(
    const nats::JetStream& js, const std::string& id, const std::vector<std::string>& nodes,
    std::chrono::steady_clock::time_point deadline) {
  auto watch = ResultWatch::start(js, id);
  if (!watch) return fail(watch.error());
  // Filed before we came: read first, so a command done long ago answers at once.
  auto now = watch->wait(nodes, std::chrono::steady_clock::now());
  if (std::all_of(now.begin(), now.end(), [](const auto& r) { return is_final(r.status); }) &&
      now.size() == nodes.size())
    return now;
  return watch->wait(nodes, deadline);
}

}  // namespace nex::commands
