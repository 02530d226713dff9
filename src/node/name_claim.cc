#include "node/name_claim.h"

#include "api/json_fields.h"
#include "commands/store.h"
#include "core/nuid.h"
#include "nats/jetstream.h"

namespace nex::node {
namespace {

using namespace std::chrono_literals;

// Nodes answer a ping at once; the gathering stops this long after the last answer, or at the
// latest after kGatherAtMost.
constexpr auto kGatherQuiet = 300ms;
constexpr auto kGatherAtMost = 2s;

Error taken(const std::string& name, const std::string& holder, const std::string& how) {
  return Error{ErrorCode::kAlreadyExists,
               "node name '" + name + "' is held by the live node " + holder + " (" + how +
                   "): give this node another name (--name, or node_name in its config), or "
                   "stop that node first"};
}

// The node id in a $NEX.PING answer whose name tag is `name`, or empty.
std::string holder_in(std::string_view answer, const std::string& name) {
  auto j = api::FieldReader::parse_object(answer, "ping answer");
  if (!j) return {};
  const auto data = j->find("data");
  if (data == j->end() || !data->is_object()) return {};
  const auto tags = data->find("tags");
  if (tags == data->end() || !tags->is_object() || tags->value("node_name", "") != name) return {};
  return data->value("node_id", "");
}

// Every node on this NATS that answers $NEX.PING under `name`, other than `id`.
Status check_pings(const nats::Connection& conn, const std::string& name, const std::string& id) {
  auto check = [&](std::string_view answer) -> Status {
    if (auto holder = holder_in(answer, name); !holder.empty() && holder != id)
      return std::unexpected(taken(name, holder, "it answers $NEX.PING under that name"));
    return {};
  };
  // Nobody listening (the common case of a first node) is known at once, without waiting.
  auto first = conn.request("$NEX.PING", "", kGatherAtMost);
  if (!first) return {};
  NEX_RETURN_IF_ERROR(check(first->data()));
  // Someone answers: hear them all.
  const std::string inbox = "_INBOX." + next_nuid();
  auto sub = conn.subscribe_sync(inbox);
  if (!sub) return std::unexpected(sub.error());
  NEX_RETURN_IF_ERROR(conn.publish("$NEX.PING", "", inbox));
  const auto deadline = std::chrono::steady_clock::now() + kGatherAtMost;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) return {};
    auto answer = sub->next(std::min<std::chrono::milliseconds>(left, kGatherQuiet));
    if (!answer) return {};
    NEX_RETURN_IF_ERROR(check(answer->data()));
  }
}

}  // namespace

Status check_name_free(const nats::Connection& conn, const std::string& name, const std::string& id,
                       const std::string& js_domain) {
  NEX_RETURN_IF_ERROR(check_pings(conn, name, id));
  // A node out of the ping's reach (another cluster, a leaf cut off a moment ago) still holds
  // its record; it holds the name if it answers to its id.
  auto js = nats::JetStream::create(conn, {.domain = js_domain});
  if (!js) return {};  // no JetStream: no records either
  std::string warning;
  auto record = commands::last_signed_record(*js, name, &warning);
  if (!record || record->id == id) return {};
  if (conn.request("$NEX.PING." + record->id, "", 2s))
    return std::unexpected(taken(name, record->id, "its record in NEX_NODES, and it answers"));
  return {};
}

}  // namespace nex::node
