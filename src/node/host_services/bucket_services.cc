// The key-value and object store services: each workload gets its own buckets,
// hs_{ns}_{workload}_kv and hs_{ns}_{workload}_obj (with a hash suffix when a part holds '_', see
// bucket_name), created on first use with the configured size limit. The bucket name comes from the
// caller's identity as the node knows it, never from the request, so a workload cannot name
// another's bucket.
#include <map>
#include <mutex>

#include "api/json_fields.h"
#include "core/encoding.h"
#include "crypto/digest.h"
#include "nats/key_value.h"
#include "nats/object_store.h"
#include "node/host_services/service.h"

namespace nex::node::host_services {
namespace {

using nlohmann::json;

// Bucket handles, bound (or created) once per connection and bucket.
template <typename Bucket, typename Config>
class Buckets {
 public:
  // `suffix` ends the bucket's name; `stream_prefix` starts its stream's (KV_, OBJ_).
  Buckets(const BucketSettings& settings, std::string suffix, std::string stream_prefix)
      : settings_(settings), suffix_(std::move(suffix)), stream_prefix_(std::move(stream_prefix)) {}

  Result<Bucket> get(const Call& call) {
    const std::string name = bucket_name(call.ns, call.workload, suffix_);
    NEX_RETURN_IF_ERROR(nats::validate_bucket_name(name));
    std::lock_guard lock(mu_);
    const auto key = std::make_pair(call.nc.raw(), name);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
    auto js = nats::JetStream::create(call.nc);
    if (!js) return fail(js.error());
    auto bucket = Bucket::bind(*js, name);
    if (!bucket && bucket.error().code == ErrorCode::kNotFound)
      bucket = Bucket::create(*js, Config{.bucket = name,
                                          .max_bytes = settings_.caps.max_bytes,
                                          .replicas = settings_.replicas.replicas});
    if (!bucket) return fail(bucket.error().wrap("bucket " + name));
    // Created now, or by an earlier node with other caps: the caps are this node's config's.
    auto capped = js->set_caps(stream_prefix_ + name, settings_.caps.stream_caps());
    if (!capped) return fail(capped.error().wrap("bucket " + name + ": cannot set its caps"));
    if (settings_.replicas.raise) {  // otherwise a bucket keeps what it was made with
      auto replicated = js->keep_replicas(stream_prefix_ + name, settings_.replicas);
      if (!replicated) return fail(replicated.error().wrap("bucket " + name));
    }
    cache_.emplace(key, *bucket);
    return bucket;
  }

 private:
  BucketSettings settings_;
  std::string suffix_;
  std::string stream_prefix_;
  std::mutex mu_;
  std::map<std::pair<natsConnection*, std::string>, Bucket> cache_;
};

class KeyValueService : public Service {
 public:
  explicit KeyValueService(const BucketSettings& s) : buckets_(s, "kv", "KV_") {}

  Reply handle(const Call& call) override {
    auto kv = buckets_.get(call);
    if (!kv) return reply_for(kv.error());
    if (call.method == "keys") {
      auto keys = kv->keys();
      return keys ? ok(api::dump(*keys)) : reply_for(keys.error());
    }
    const std::string key = call.header(kHeaderKey);
    if (key.empty()) return missing_header(kHeaderKey);
    if (auto st = nats::validate_kv_key(key); !st) return error(kBadRequest, st.error().message);
    if (call.method == "get") {
      auto entry = kv->get(key);
      if (!entry && entry.error().code == ErrorCode::kNotFound)
        return error(kNotFound, "no such key: " + key);
      return entry ? ok(std::move(entry->value)) : reply_for(entry.error());
    }
    if (call.method == "set") {
      auto revision = kv->put(key, call.msg.data());
      if (!revision) return reply_for(revision.error());
      return ok(api::dump({{"revision", *revision}, {"success", true}}));
    }
    if (call.method == "delete") {
      auto st = kv->erase(key);
      return st ? ok(api::dump({{"success", true}})) : reply_for(st.error());
    }
    return error(kBadRequest, "kv has no method '" + call.method + "'");
  }

 private:
  Buckets<nats::KeyValue, nats::KeyValueConfig> buckets_;
};

json info_json(const nats::ObjectInfo& info) {
  return json::parse(nats::object_info_to_json(info));
}

class ObjectStoreService : public Service {
 public:
  explicit ObjectStoreService(const BucketSettings& s) : buckets_(s, "obj", "OBJ_") {}

  Reply handle(const Call& call) override {
    auto store = buckets_.get(call);
    if (!store) return reply_for(store.error());
    if (call.method == "list") {
      auto list = store->list();
      if (!list) return reply_for(list.error());
      json out = json::array();
      for (const auto& info : *list) out.push_back(info_json(info));
      return ok(api::dump(out));
    }
    const std::string name = call.header(kHeaderObjectName);
    if (name.empty()) return missing_header(kHeaderObjectName);
    if (call.method == "get") {
      auto data = store->get_bytes(name);
      if (!data && data.error().code == ErrorCode::kNotFound)
        return error(kNotFound, "no such object: " + name);
      return data ? ok(std::move(*data)) : reply_for(data.error());
    }
    if (call.method == "put") {
      auto info = store->put_bytes(name, call.msg.data());
      return info ? ok(nats::object_info_to_json(*info)) : reply_for(info.error());
    }
    if (call.method == "delete") {
      auto st = store->remove(name);
      if (!st && st.error().code == ErrorCode::kNotFound)
        return error(kNotFound, "no such object: " + name);
      return st ? ok(api::dump({{"success", true}})) : reply_for(st.error());
    }
    return error(kBadRequest, "objectstore has no method '" + call.method + "'");
  }

 private:
  Buckets<nats::ObjectStore, nats::ObjectStoreConfig> buckets_;
};

}  // namespace

std::string bucket_name(std::string_view ns, std::string_view workload, std::string_view kind) {
  std::string name = "hs_" + std::string(ns) + "_" + std::string(workload) + "_";
  if (ns.find('_') != std::string_view::npos || workload.find('_') != std::string_view::npos) {
    // The NUL keeps ("a_b", "c") and ("a", "b_c") apart in the hash, as '_' does not in the name.
    const std::string parts = std::string(ns) + '\0' + std::string(workload);
    name += hex_encode(crypto::sha256(as_bytes(parts))).substr(0, 16) + "_";
  }
  return name + std::string(kind);
}

std::unique_ptr<Service> make_kv_service(const BucketSettings& settings) {
  return std::make_unique<KeyValueService>(settings);
}

std::unique_ptr<Service> make_object_store_service(const BucketSettings& settings) {
  return std::make_unique<ObjectStoreService>(settings);
}

}  // namespace nex::node::host_services
