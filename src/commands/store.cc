#include "commands/store.h"

#include <nlohmann/json.hpp>

#include "commands/command.h"
#include "nats/key_value.h"

namespace nex::commands {

namespace {

Status ensure_stream(const nats::JetStream& js, const nats::StreamConfig& config) {
  if (js.stream_info(config.name)) return {};
  auto added = js.add_stream(config);
  if (added) return {};
  if (js.stream_info(config.name)) return {};  // another sender created it meanwhile
  return std::unexpected(added.error());
}

Result<nats::KeyValue> directory(const nats::JetStream& js) {
  if (auto kv = nats::KeyValue::bind(js, kNodeDirectory)) return kv;
  return nats::KeyValue::create(
      js, {.bucket = kNodeDirectory, .description = "nex nodes by name: id and xkey"});
}

}  // namespace

Status ensure_streams(const nats::JetStream& js, std::chrono::seconds retention) {
  const auto age = std::chrono::duration_cast<std::chrono::nanoseconds>(retention);
  NEX_RETURN_IF_ERROR(ensure_stream(js, {.name = kCommandStream,
                                         .description = "nex durable commands, in order sent",
                                         .subjects = {"$NEX.cmd.*.*.*"},
                                         .max_age = age}));
  return ensure_stream(js, {.name = kResultStream,
                            .description = "nex command results",
                            .subjects = {"$NEX.cmdresult.*.*"},
                            .max_age = age});
}

Status announce_node(const nats::JetStream& js, const NodeRecord& node) {
  auto kv = directory(js);
  if (!kv) return std::unexpected(kv.error());
  const std::string value =
      nlohmann::json{{"name", node.name}, {"id", node.id}, {"xkey", node.xkey}}.dump();
  NEX_RETURN_IF_ERROR(kv->put(node.name, value));
  return {};
}

Result<NodeRecord> find_node(const nats::JetStream& js, const std::string& name_or_id) {
  auto kv = nats::KeyValue::bind(js, kNodeDirectory);
  auto read = [](std::string_view text) -> std::optional<NodeRecord> {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    return NodeRecord{j.value("name", ""), j.value("id", ""), j.value("xkey", "")};
  };
  if (kv) {
    if (auto e = kv->get(name_or_id)) {
      if (auto r = read(e->value)) return *r;
    }
    if (name_or_id.size() == 56 && name_or_id[0] == 'N') {
      for (const auto& key : kv->keys().value_or(std::vector<std::string>{})) {
        auto e = kv->get(key);
        if (!e) continue;
        if (auto r = read(e->value); r && r->id == name_or_id) return *r;
      }
    }
  }
  return fail(ErrorCode::kNotFound, "no node named '" + name_or_id +
                                        "' has ever connected to this NATS (bucket " +
                                        kNodeDirectory + ")");
}

}  // namespace nex::commands
