#include "nats/key_value.h"

#include <regex>

#include "nats/nats_status.h"

namespace nex::nats {

struct KeyValue::Impl {
  JetStream js;
  kvStore* kv = nullptr;
  std::string bucket;
  explicit Impl(JetStream j) : js(std::move(j)) {}
  ~Impl() {
    if (kv != nullptr) kvStore_Destroy(kv);
  }
};

namespace {

KvEntry to_entry(kvEntry* e) {
  KvEntry out;
  out.bucket = kvEntry_Bucket(e);
  out.key = kvEntry_Key(e);
  const void* data = kvEntry_Value(e);
  if (data != nullptr)
    out.value.assign(static_cast<const char*>(data), static_cast<size_t>(kvEntry_ValueLen(e)));
  out.revision = kvEntry_Revision(e);
  out.created_ns = kvEntry_Created(e);
  switch (kvEntry_Operation(e)) {
    case kvOp_Delete:
      out.operation = KvOperation::kDelete;
      break;
    case kvOp_Purge:
      out.operation = KvOperation::kPurge;
      break;
    default:
      out.operation = KvOperation::kPut;
      break;
  }
  kvEntry_Destroy(e);
  return out;
}

}  // namespace

Status validate_kv_key(std::string_view key) {
  static const std::regex kPattern("[-/_=.a-zA-Z0-9]+");
  if (key.empty()) return fail(ErrorCode::kInvalidArgument, "invalid key: empty");
  if (!std::regex_match(key.begin(), key.end(), kPattern) || key.front() == '.' ||
      key.back() == '.' || key.find("..") != std::string_view::npos) {
    return fail(ErrorCode::kInvalidArgument,
                "invalid key '" + std::string(key) +
                    "': use letters, digits and -/_=. with no leading, trailing or double dot");
  }
  return {};
}

Status validate_bucket_name(std::string_view bucket) {
  static const std::regex kPattern("[a-zA-Z0-9_-]+");
  if (!std::regex_match(bucket.begin(), bucket.end(), kPattern)) {
    return fail(ErrorCode::kInvalidArgument, "invalid bucket name '" + std::string(bucket) +
                                                 "': use letters, digits, '-' and '_'");
  }
  return {};
}

KvWatcher::~KvWatcher() {
  if (w_ != nullptr) {
    kvWatcher_Stop(w_);
    kvWatcher_Destroy(w_);
  }
}

Result<std::optional<KvEntry>> KvWatcher::next(std::chrono::milliseconds timeout) {
  kvEntry* e = nullptr;
  if (auto s = kvWatcher_Next(&e, w_, timeout.count()); s != NATS_OK) {
    return fail(to_error(s, "watch"));
  }
  if (e == nullptr) return std::optional<KvEntry>();
  return std::optional<KvEntry>(to_entry(e));
}

Result<KeyValue> KeyValue::create(const JetStream& js, const KeyValueConfig& c) {
  NEX_RETURN_IF_ERROR(validate_bucket_name(c.bucket));
  if (c.history < 1 || c.history > 64) {
    return fail(ErrorCode::kInvalidArgument,
                "invalid KV history " + std::to_string(c.history) + ": must be 1..64");
  }
  auto impl = std::make_shared<Impl>(js);
  impl->bucket = c.bucket;
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = c.bucket.c_str();
  if (!c.description.empty()) cfg.Description = c.description.c_str();
  cfg.History = static_cast<uint8_t>(c.history);
  cfg.TTL = std::chrono::duration_cast<std::chrono::milliseconds>(c.ttl).count();
  cfg.MaxBytes = c.max_bytes;
  cfg.MaxValueSize = c.max_value_size;
  cfg.StorageType = c.storage == Storage::kFile ? js_FileStorage : js_MemoryStorage;
  cfg.Replicas = c.replicas;
  if (auto s = js_CreateKeyValue(&impl->kv, js.raw(), &cfg); s != NATS_OK) {
    return fail(to_error(s, "create KV bucket " + c.bucket));
  }
  return KeyValue(std::move(impl));
}

Result<KeyValue> KeyValue::bind(const JetStream& js, const std::string& bucket) {
  NEX_RETURN_IF_ERROR(validate_bucket_name(bucket));
  auto impl = std::make_shared<Impl>(js);
  impl->bucket = bucket;
  if (auto s = js_KeyValue(&impl->kv, js.raw(), bucket.c_str()); s != NATS_OK) {
    Error err = to_error(s, "KV bucket " + bucket);
    if (s == NATS_NOT_FOUND) err.code = ErrorCode::kNotFound;
    return fail(std::move(err));
  }
  return KeyValue(std::move(impl));
}

Status KeyValue::remove_bucket(const JetStream& js, const std::string& bucket) {
  NEX_RETURN_IF_ERROR(validate_bucket_name(bucket));
  return check(js_DeleteKeyValue(js.raw(), bucket.c_str()), "delete KV bucket " + bucket);
}

const std::string& KeyValue::bucket() const { return impl_->bucket; }

Result<uint64_t> KeyValue::put(std::string_view key, std::string_view value) const {
  NEX_RETURN_IF_ERROR(validate_kv_key(key));
  const std::string k(key);
  uint64_t rev = 0;
  if (auto s =
          kvStore_Put(&rev, impl_->kv, k.c_str(), value.data(), static_cast<int>(value.size()));
      s != NATS_OK) {
    return fail(to_error(s, "put " + k));
  }
  return rev;
}

Result<uint64_t> KeyValue::create(std::string_view key, std::string_view value) const {
  NEX_RETURN_IF_ERROR(validate_kv_key(key));
  const std::string k(key);
  uint64_t rev = 0;
  if (auto s =
          kvStore_Create(&rev, impl_->kv, k.c_str(), value.data(), static_cast<int>(value.size()));
      s != NATS_OK) {
    Error err = to_error(s, "create " + k);
    // libnats reports an existing key as a generic "wrong last sequence" error.
    if (auto existing = get(key); existing) {
      err = Error{ErrorCode::kAlreadyExists, "create " + k +
                                                 ": the key already has a value (revision " +
                                                 std::to_string(existing->revision) + ")"};
    }
    return fail(std::move(err));
  }
  return rev;
}

Result<uint64_t> KeyValue::update(std::string_view key, std::string_view value,
                                  uint64_t last) const {
  NEX_RETURN_IF_ERROR(validate_kv_key(key));
  const std::string k(key);
  uint64_t rev = 0;
  if (auto s = kvStore_Update(&rev, impl_->kv, k.c_str(), value.data(),
                              static_cast<int>(value.size()), last);
      s != NATS_OK) {
    return fail(to_error(s, "update " + k));
  }
  return rev;
}

Result<KvEntry> KeyValue::get(std::string_view key) const {
  NEX_RETURN_IF_ERROR(validate_kv_key(key));
  const std::string k(key);
  kvEntry* e = nullptr;
  if (auto s = kvStore_Get(&e, impl_->kv, k.c_str()); s != NATS_OK) {
    return fail(to_error(s, "get " + k));
  }
  return to_entry(e);
}

Status KeyValue::erase(std::string_view key) const {
  NEX_RETURN_IF_ERROR(validate_kv_key(key));
  const std::string k(key);
  return check(kvStore_Delete(impl_->kv, k.c_str()), "delete " + k);
}

Status KeyValue::purge(std::string_view key) const {
  NEX_RETURN_IF_ERROR(validate_kv_key(key));
  const std::string k(key);
  return check(kvStore_Purge(impl_->kv, k.c_str(), nullptr), "purge " + k);
}

Result<std::vector<std::string>> KeyValue::keys() const {
  kvKeysList list{};
  std::vector<std::string> out;
  natsStatus s = kvStore_Keys(&list, impl_->kv, nullptr);
  if (s == NATS_NOT_FOUND) return out;  // empty bucket
  if (s != NATS_OK) return fail(to_error(s, "list keys of " + impl_->bucket));
  for (int i = 0; i < list.Count; ++i) out.emplace_back(list.Keys[i]);
  kvKeysList_Destroy(&list);
  return out;
}

Result<std::vector<KvEntry>> KeyValue::history(std::string_view key) const {
  NEX_RETURN_IF_ERROR(validate_kv_key(key));
  const std::string k(key);
  kvEntryList list{};
  if (auto s = kvStore_History(&list, impl_->kv, k.c_str(), nullptr); s != NATS_OK) {
    return fail(to_error(s, "history of " + k));
  }
  std::vector<KvEntry> out;
  for (int i = 0; i < list.Count; ++i) {
    out.push_back(to_entry(list.Entries[i]));
    list.Entries[i] = nullptr;  // ownership moved; kvEntryList_Destroy skips NULLs
  }
  kvEntryList_Destroy(&list);
  return out;
}

Result<KvWatcher> KeyValue::watch(std::string_view keys) const {
  const std::string k(keys);
  kvWatcher* w = nullptr;
  if (auto s = kvStore_Watch(&w, impl_->kv, k.c_str(), nullptr); s != NATS_OK) {
    return fail(to_error(s, "watch " + k));
  }
  return KvWatcher(w);
}

}  // namespace nex::nats
