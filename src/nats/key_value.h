// KeyValue: a JetStream KV bucket (ADR-8, stream KV_<bucket>) over nats.c's kvStore. Values are
// bytes in std::string. Keys follow the KV rules: [-/_=.a-zA-Z0-9]+, no leading, trailing or
// double dot.
#pragma once

#include <nats/nats.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "nats/jetstream.h"

namespace nex::nats {

struct KeyValueConfig {
  std::string bucket;
  std::string description;
  int history = 1;  // 1..64 values kept per key
  std::chrono::nanoseconds ttl{0};
  int64_t max_bytes = -1;
  int32_t max_value_size = -1;
  Storage storage = Storage::kFile;
  int replicas = 1;
};

enum class KvOperation { kPut, kDelete, kPurge };

struct KvEntry {
  std::string bucket;
  std::string key;
  std::string value;
  uint64_t revision = 0;
  int64_t created_ns = 0;  // unix nanoseconds
  KvOperation operation = KvOperation::kPut;
};

// Yields changes to the watched keys: first the current values, then live updates.
class KvWatcher {
 public:
  explicit KvWatcher(kvWatcher* w) : w_(w) {}
  KvWatcher(KvWatcher&& o) noexcept : w_(std::exchange(o.w_, nullptr)) {}
  KvWatcher& operator=(KvWatcher&&) = delete;
  ~KvWatcher();
  // The next entry; std::nullopt marks "initial values delivered" (nats.c sends a NULL entry).
  Result<std::optional<KvEntry>> next(std::chrono::milliseconds timeout);

 private:
  kvWatcher* w_ = nullptr;
};

Status validate_kv_key(std::string_view key);
Status validate_bucket_name(std::string_view bucket);

class KeyValue {
 public:
  static Result<KeyValue> create(const JetStream& js, const KeyValueConfig& config);
  static Result<KeyValue> bind(const JetStream& js, const std::string& bucket);
  static Status remove_bucket(const JetStream& js, const std::string& bucket);

  const std::string& bucket() const;
  Result<uint64_t> put(std::string_view key, std::string_view value) const;
  // Fails with kAlreadyExists when the key holds a value.
  Result<uint64_t> create(std::string_view key, std::string_view value) const;
  // Compare-and-set against the key's last revision.
  Result<uint64_t> update(std::string_view key, std::string_view value,
                          uint64_t last_revision) const;
  // kNotFound for a missing or deleted key.
  Result<KvEntry> get(std::string_view key) const;
  Status erase(std::string_view key) const;  // KV "delete": keeps history, marks a tombstone
  Status purge(std::string_view key) const;  // removes the history too
  Result<std::vector<std::string>> keys() const;
  Result<std::vector<KvEntry>> history(std::string_view key) const;
  Result<KvWatcher> watch(std::string_view keys = ">") const;

 private:
  struct Impl;
  explicit KeyValue(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace nex::nats
