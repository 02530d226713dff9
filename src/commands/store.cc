#include "commands/store.h"

#include "api/json_fields.h"
#include "commands/command.h"
#include "core/encoding.h"
#include "nats/key_value.h"

namespace nex::commands {

using nlohmann::json;

namespace {

// The config of one of the streams, as a node keeps it.
nats::StreamConfig stream_config(const char* name, const StreamLimits& limits) {
  const bool commands = std::string_view(name) == kCommandStream;
  return {.name = name,
          .description = commands ? "nex durable commands, in order sent" : "nex command results",
          .subjects = {commands ? "$NEX.cmd.*.*.*" : "$NEX.cmdresult.*.*"},
          // A full command stream refuses what comes, rather than drop commands not yet run;
          // results make room by dropping the oldest.
          .discard = commands ? nats::Discard::kNew : nats::Discard::kOld,
          .replicas = limits.replicas.replicas,
          .max_bytes = limits.max_bytes,
          .max_msg_size = limits.max_message_bytes,
          .max_age = limits.max_age};
}

Status ensure_stream(const nats::JetStream& js, const nats::StreamConfig& config) {
  if (js.stream_info(config.name)) return {};
  auto added = js.add_stream(config);
  if (added) return {};
  if (js.stream_info(config.name)) return {};  // another sender created it meanwhile
  return std::unexpected(added.error());
}

std::string describe(const nats::StreamConfig& c) {
  return "max_bytes " + std::to_string(c.max_bytes) + ", max_msg_size " +
         std::to_string(c.max_msg_size) + ", max_age " +
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(c.max_age).count()) +
         " s, discard " + (c.discard == nats::Discard::kNew ? "new" : "old") +
         ", max_msgs_per_subject " + std::to_string(c.max_msgs_per_subject);
}

// Sets the limits of an existing stream to `want`'s, when they differ.
Status update_limits(const nats::JetStream& js, const nats::StreamConfig& want,
                     const std::function<void(const std::string&)>& changed) {
  auto info = js.stream_info(want.name);
  if (!info) return std::unexpected(info.error());
  auto apply = [&](nats::StreamConfig& c) {
    c.max_bytes = want.max_bytes;
    c.max_msg_size = want.max_msg_size;
    c.max_age = want.max_age;
    c.discard = want.discard;
    if (want.max_msgs_per_subject > 0) c.max_msgs_per_subject = want.max_msgs_per_subject;
  };
  nats::StreamConfig target = info->config;
  apply(target);
  if (describe(target) == describe(info->config)) return {};
  auto updated = js.update_stream(want.name, apply);
  if (!updated) return std::unexpected(updated.error());
  if (changed)
    changed("limits changed on " + want.name + ": " + describe(info->config) + " -> " +
            describe(updated->config));
  return {};
}

Result<nats::KeyValue> directory(const nats::JetStream& js, const StreamLimits& limits) {
  if (auto kv = nats::KeyValue::bind(js, kNodeDirectory)) return kv;
  auto created = nats::KeyValue::create(
      js, {.bucket = kNodeDirectory,
           .description = "nex nodes by name: id and xkey, signed by the node",
           .history = kNodeHistory,
           .ttl = limits.max_age,
           .max_bytes = limits.max_bytes,
           .max_value_size = static_cast<int32_t>(limits.max_message_bytes),
           .replicas = limits.replicas.replicas});
  if (created) return created;
  if (auto kv = nats::KeyValue::bind(js, kNodeDirectory)) return kv;  // created meanwhile
  return created;
}

}  // namespace

Status ensure_streams(const nats::JetStream& js, const StreamLimits& limits) {
  NEX_RETURN_IF_ERROR(ensure_stream(js, stream_config(kCommandStream, limits)));
  return ensure_stream(js, stream_config(kResultStream, limits));
}

Status enforce_limits(const nats::JetStream& js, const StreamLimits& limits,
                      const std::function<void(const std::string&)>& changed) {
  NEX_RETURN_IF_ERROR(ensure_streams(js, limits));
  for (const char* name : {kCommandStream, kResultStream, kNodeDirectoryStream}) {
    auto note = js.keep_replicas(name, limits.replicas);
    if (!note && note.error().code != ErrorCode::kNotFound) return fail(note.error());
    if (note && !note->empty() && changed) changed(*note);
  }
  for (const char* name : {kCommandStream, kResultStream})
    NEX_RETURN_IF_ERROR(update_limits(js, stream_config(name, limits), changed));
  auto kv = directory(js, limits);
  if (!kv) return std::unexpected(kv.error());
  nats::StreamConfig nodes{.name = kNodeDirectoryStream,
                           .discard = nats::Discard::kNew,
                           .max_bytes = limits.max_bytes,
                           .max_msg_size = limits.max_message_bytes,
                           .max_msgs_per_subject = kNodeHistory,
                           .max_age = limits.max_age};
  return update_limits(js, nodes, changed);
}

json to_json(const NodeRecord& r) {
  json j = {{"name", r.name}, {"id", r.id}, {"xkey", r.xkey}};
  if (!r.tags.empty()) j["tags"] = r.tags;
  if (!r.signature.empty()) j["signature"] = r.signature;
  return j;
}

Result<NodeRecord> parse_record(std::string_view text) {
  auto j = api::FieldReader::parse_object(text, "node record");
  if (!j) return fail(j.error());
  api::FieldReader f(*j, "node record");
  NodeRecord r;
  f.string("name", r.name, true);
  f.string("id", r.id, true);
  f.string("xkey", r.xkey);
  f.string_map("tags", r.tags);
  f.string("signature", r.signature);
  NEX_RETURN_IF_ERROR(f.status());
  return r;
}

namespace {

std::string record_bytes(const NodeRecord& r) {
  json j = to_json(r);
  j.erase("signature");
  return api::dump(j);  // keys sorted, no spaces
}

}  // namespace

void sign(NodeRecord& r, const crypto::KeyPair& node_key) {
  r.id = node_key.public_key();
  r.signature.clear();
  r.signature = base64_encode(node_key.sign(as_bytes(record_bytes(r))), Base64::kUrlNoPad);
}

Status verify_record(const NodeRecord& r, const std::string& name) {
  auto denied = [](const std::string& why) { return fail(ErrorCode::kPermissionDenied, why); };
  if (r.name != name) return denied("it names node '" + r.name + "', not '" + name + "'");
  if (auto key = crypto::decode_public_key(crypto::KeyType::kServer, r.id); !key)
    return denied("its id '" + r.id + "' is not a node's server key (N...)");
  if (r.signature.empty()) return denied("it carries no signature");
  auto sig = base64_decode(r.signature, Base64::kUrlNoPad);
  if (!sig || sig->size() != 64) return denied("its signature is not base64url Ed25519");
  if (!crypto::verify(r.id, as_bytes(record_bytes(r)), *sig))
    return denied("its signature is not by its id " + r.id);
  return {};
}

Status announce_node(const nats::JetStream& js, const NodeRecord& node) {
  auto kv = directory(js, {});
  if (!kv) return std::unexpected(kv.error());
  if (auto st = verify_record(node, node.name); !st)
    return fail(st.error().wrap("this node's record is not signed"));
  NEX_RETURN_IF_ERROR(kv->put(node.name, api::dump(to_json(node))));
  return {};
}

Result<RecordState> keep_filed(const nats::JetStream& js, const NodeRecord& node,
                               std::chrono::seconds refresh) {
  auto kv = directory(js, {});
  if (!kv) return fail(kv.error());
  const std::string value = api::dump(to_json(node));
  RecordState found = RecordState::kNew;
  if (auto e = kv->get(node.name)) {
    const auto age = std::chrono::system_clock::now().time_since_epoch() -
                     std::chrono::nanoseconds(e->created_ns);
    if (e->value == value && age < refresh) return RecordState::kAsItWas;
    found = e->value == value ? RecordState::kRefreshed : RecordState::kReplacedByOther;
  } else if (e.error().code != ErrorCode::kNotFound) {
    return fail(e.error());
  }
  NEX_RETURN_IF_ERROR(announce_node(js, node));
  return found;
}

namespace {

Error not_its_nodes(const std::string& name, const Error& why) {
  return Error{ErrorCode::kPermissionDenied,
               "the record of node " + name + " in " + kNodeDirectory +
                   " is not signed by its node: refusing to seal to it or address it (" +
                   why.message + ")"};
}

// The record filed under `key` as it is now, checked.
Result<NodeRecord> checked_record(const nats::KeyValue& kv, const std::string& key) {
  auto e = kv.get(key);
  if (!e) return fail(e.error());
  auto r = parse_record(e->value);
  if (!r) return fail(not_its_nodes(key, r.error()));
  if (auto st = verify_record(*r, key); !st) return fail(not_its_nodes(key, st.error()));
  return r;
}

}  // namespace

Result<NodeRecord> find_node(const nats::JetStream& js, const std::string& name_or_id) {
  auto none = [&] {
    return fail(ErrorCode::kNotFound, "no node named '" + name_or_id +
                                          "' has ever connected to this NATS (bucket " +
                                          kNodeDirectory + ")");
  };
  auto kv = nats::KeyValue::bind(js, kNodeDirectory);
  if (!kv) return none();
  const bool by_id = name_or_id.size() == 56 && name_or_id[0] == 'N';
  if (!by_id) {
    auto r = checked_record(*kv, name_or_id);
    if (!r && r.error().code != ErrorCode::kPermissionDenied) return none();
    return r;
  }
  // By id: the one record whose node signed it with that id.
  std::optional<Error> forged;
  for (const auto& key : kv->keys().value_or(std::vector<std::string>{})) {
    auto r = checked_record(*kv, key);
    if (r && r->id == name_or_id) return r;
    if (!r && r.error().code == ErrorCode::kPermissionDenied) forged = r.error();
  }
  if (forged) return fail(*forged);
  return none();
}

Result<std::vector<NodeRecord>> signed_records(const nats::JetStream& js, const std::string& name,
                                               std::string* warning) {
  auto none = [&] {
    return fail(ErrorCode::kNotFound,
                "node " + name + " has no record in " + std::string(kNodeDirectory));
  };
  auto kv = nats::KeyValue::bind(js, kNodeDirectory);
  if (!kv) return none();
  auto history = kv->history(name);
  if (!history || history->empty()) return none();
  std::vector<NodeRecord> found;
  std::optional<Error> newest;  // why the newest record is not the node's
  for (auto it = history->rbegin(); it != history->rend(); ++it) {
    if (it->operation != nats::KvOperation::kPut) {
      if (!newest && found.empty()) newest = Error{ErrorCode::kPermissionDenied, "it was deleted"};
      continue;
    }
    auto r = parse_record(it->value);
    Status st = r ? verify_record(*r, name) : Status(std::unexpected(r.error()));
    if (st) {
      found.push_back(std::move(*r));
    } else if (!newest && found.empty()) {
      newest = st.error();
    }
  }
  if (found.empty())
    return fail(ErrorCode::kPermissionDenied,
                "no record of node " + name + " in " + kNodeDirectory +
                    " is signed by its node (the newest: " + newest->message + ")");
  if (newest && warning != nullptr)
    *warning = "the newest record of node " + name + " in " + kNodeDirectory +
               " is not signed by its node (" + newest->message +
               "); its results are checked against its signed records, the last one id " +
               found.front().id;
  return found;
}

Result<NodeRecord> last_signed_record(const nats::JetStream& js, const std::string& name,
                                      std::string* warning) {
  auto records = signed_records(js, name, warning);
  if (!records) return fail(records.error());
  return std::move(records->front());
}

}  // namespace nex::commands
