// ObjectStore: JetStream Object Store buckets (ADR-20) exactly as the Go client reads and writes
// them (docs/wire.md "NATS formats"): stream OBJ_<bucket>, content in ≤128 KiB chunks on
// $O.<bucket>.C.<nuid>, metadata on $O.<bucket>.M.<base64url(name), padded>, digest
// "SHA-256=<base64url, padded>". Objects are streamed in and out in chunks: a put or get never
// holds a whole large object in memory (at most kMaxChunksInFlight chunks).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "nats/jetstream.h"

namespace nex::nats {

struct ObjectStoreConfig {
  std::string bucket;
  std::string description;
  std::chrono::nanoseconds ttl{0};
  int64_t max_bytes = -1;
  Storage storage = Storage::kFile;
  int64_t replicas = 1;
};

using ObjectHeaders = std::map<std::string, std::vector<std::string>>;

struct ObjectMeta {
  std::string name;
  std::string description;
  ObjectHeaders headers;
};

struct ObjectInfo {
  std::string name;
  std::string description;
  ObjectHeaders headers;
  std::string bucket;
  std::string nuid;
  uint64_t size = 0;
  uint32_t chunks = 0;
  std::string mtime;   // RFC 3339, as written by the putter (may be empty)
  std::string digest;  // "SHA-256=…"
  bool deleted = false;
  uint32_t max_chunk_size = 0;
};

// Fills `buffer` with up to buffer.size() bytes; returns 0 at the end of the data.
using ObjectReader = std::function<Result<size_t>(std::span<char> buffer)>;
// Receives the object's bytes in order, one chunk at a time.
using ObjectWriter = std::function<Status(std::string_view chunk)>;

class ObjectStore {
 public:
  static constexpr size_t kChunkSize = 128 * 1024;
  static constexpr int64_t kMaxChunksInFlight = 32;

  static Result<ObjectStore> create(const JetStream& js, const ObjectStoreConfig& config);
  // kNotFound when the bucket does not exist.
  static Result<ObjectStore> bind(const JetStream& js, const std::string& bucket);
  static Status remove_bucket(const JetStream& js, const std::string& bucket);

  const std::string& bucket() const { return bucket_; }

  // Stores a new version of the object, then purges the previous version's chunks.
  Result<ObjectInfo> put(const ObjectMeta& meta, const ObjectReader& reader) const;
  Result<ObjectInfo> put_bytes(const std::string& name, std::string_view data) const;
  Result<ObjectInfo> put_file(const std::string& name, const std::filesystem::path& path) const;

  // Streams the object to `writer` and verifies its size and SHA-256 digest (kCorrupt if they
  // do not match). kNotFound for a missing or deleted object.
  Result<ObjectInfo> get(const std::string& name, const ObjectWriter& writer) const;
  Result<std::string> get_bytes(const std::string& name) const;
  // Writes to a temporary file beside `path` and renames it into place once verified.
  Result<ObjectInfo> get_file(const std::string& name, const std::filesystem::path& path) const;

  Result<ObjectInfo> info(const std::string& name) const;
  Result<std::vector<ObjectInfo>> list() const;  // live objects only
  Status remove(const std::string& name) const;

 private:
  ObjectStore(JetStream js, std::string bucket) : js_(std::move(js)), bucket_(std::move(bucket)) {}
  std::string stream() const { return "OBJ_" + bucket_; }
  std::string meta_subject(const std::string& name) const;
  std::string chunk_subject(const std::string& nuid) const;
  Status publish_meta(const ObjectInfo& info) const;

  JetStream js_;
  std::string bucket_;
};

// ADR-20 metadata JSON, both ways. from_json tolerates absent optional fields.
std::string object_info_to_json(const ObjectInfo& info);
Result<ObjectInfo> object_info_from_json(std::string_view json);
// The hex SHA-256 of an ObjectInfo digest ("SHA-256=" + base64, padded or not, url or standard
// alphabet); empty when it is not one.
std::string digest_hex(std::string_view digest);

}  // namespace nex::nats
