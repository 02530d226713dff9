#include "nats/object_store.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/clock.h"
#include "core/encoding.h"
#include "core/nuid.h"
#include "crypto/digest.h"
#include "nats/key_value.h"

namespace nex::nats {
namespace {

using nlohmann::json;

constexpr std::string_view kDigestPrefix = "SHA-256=";

std::string digest_string(const crypto::Sha256Digest& d) {
  return std::string(kDigestPrefix) + base64_encode(d, Base64::kUrl);
}

// Accepts the padded base64url form Go writes, and standard base64 from older clients.
bool digest_matches(const std::string& stated, const crypto::Sha256Digest& actual) {
  return digest_hex(stated) == hex_encode(actual);
}

Status validate_name(const std::string& name) {
  if (name.empty()) return fail(ErrorCode::kInvalidArgument, "invalid object name: empty");
  return {};
}

template <typename T>
bool read_field(const json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  try {
    out = it->get<T>();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

}  // namespace

std::string object_info_to_json(const ObjectInfo& info) {
  json j = json::object();
  j["name"] = info.name;
  if (!info.description.empty()) j["description"] = info.description;
  if (!info.headers.empty()) j["headers"] = info.headers;
  j["options"] = json{{"max_chunk_size", info.max_chunk_size}};
  j["bucket"] = info.bucket;
  j["nuid"] = info.nuid;
  j["size"] = info.size;
  if (!info.mtime.empty()) j["mtime"] = info.mtime;
  j["chunks"] = info.chunks;
  if (!info.digest.empty()) j["digest"] = info.digest;
  if (info.deleted) j["deleted"] = true;
  // Object names are arbitrary user strings: never let invalid UTF-8 throw.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<ObjectInfo> object_info_from_json(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(ErrorCode::kCorrupt, "object metadata is not a JSON object");
  }
  ObjectInfo info;
  bool ok = read_field(j, "name", info.name) && read_field(j, "description", info.description) &&
            read_field(j, "headers", info.headers) && read_field(j, "bucket", info.bucket) &&
            read_field(j, "nuid", info.nuid) && read_field(j, "size", info.size) &&
            read_field(j, "chunks", info.chunks) && read_field(j, "digest", info.digest) &&
            read_field(j, "deleted", info.deleted);
  if (auto it = j.find("mtime"); ok && it != j.end() && it->is_string())
    info.mtime = it->get<std::string>();
  if (auto it = j.find("options"); ok && it != j.end() && it->is_object()) {
    ok = read_field(*it, "max_chunk_size", info.max_chunk_size);
  }
  if (!ok) return fail(ErrorCode::kCorrupt, "object metadata has a field of the wrong type");
  return info;
}

Result<ObjectStore> ObjectStore::create(const JetStream& js, const ObjectStoreConfig& c) {
  NEX_RETURN_IF_ERROR(validate_bucket_name(c.bucket));
  StreamConfig sc;
  sc.name = "OBJ_" + c.bucket;
  sc.description = c.description;
  sc.subjects = {"$O." + c.bucket + ".C.>", "$O." + c.bucket + ".M.>"};
  sc.storage = c.storage;
  sc.replicas = c.replicas;
  sc.discard = Discard::kNew;
  sc.max_bytes = c.max_bytes;
  sc.max_age = c.ttl;
  sc.allow_rollup = true;
  sc.allow_direct = true;
  if (auto si = js.add_stream(sc); !si)
    return fail(si.error().wrap("create object store " + c.bucket));
  return ObjectStore(js, c.bucket);
}

Result<ObjectStore> ObjectStore::bind(const JetStream& js, const std::string& bucket) {
  NEX_RETURN_IF_ERROR(validate_bucket_name(bucket));
  if (auto si = js.stream_info("OBJ_" + bucket); !si) {
    if (si.error().code == ErrorCode::kNotFound) {
      return fail(ErrorCode::kNotFound, "object store bucket '" + bucket + "' does not exist");
    }
    return fail(si.error());
  }
  return ObjectStore(js, bucket);
}

Status ObjectStore::remove_bucket(const JetStream& js, const std::string& bucket) {
  NEX_RETURN_IF_ERROR(validate_bucket_name(bucket));
  return js.delete_stream("OBJ_" + bucket);
}

std::string ObjectStore::meta_subject(const std::string& name) const {
  return "$O." + bucket_ + ".M." + base64_encode(as_bytes(name), Base64::kUrl);
}

std::string ObjectStore::chunk_subject(const std::string& nuid) const {
  return "$O." + bucket_ + ".C." + nuid;
}

Status ObjectStore::publish_meta(const ObjectInfo& info) const {
  auto msg = Message::create(meta_subject(info.name), object_info_to_json(info));
  if (!msg) return fail(msg.error());
  NEX_RETURN_IF_ERROR(msg->set_header("Nats-Rollup", "sub"));
  if (auto ack = js_.publish(*msg); !ack) return fail(ack.error());
  return {};
}

Result<ObjectInfo> ObjectStore::put(const ObjectMeta& meta, const ObjectReader& reader) const {
  NEX_RETURN_IF_ERROR(validate_name(meta.name));
  std::string old_nuid;
  if (auto old = info(meta.name); old) {
    old_nuid = old->nuid;
  } else if (old.error().code != ErrorCode::kNotFound) {
    return fail(old.error());
  }

  ObjectInfo info;
  info.name = meta.name;
  info.description = meta.description;
  info.headers = meta.headers;
  info.bucket = bucket_;
  info.nuid = next_nuid();
  info.max_chunk_size = kChunkSize;
  const std::string chunks_subject = chunk_subject(info.nuid);

  // A context of its own bounds this put's chunks in flight and keeps its errors apart.
  JetStreamOptions jo;
  jo.timeout = js_.timeout();
  jo.max_pending_async = kMaxChunksInFlight;
  auto pipeline = JetStream::create(js_.connection(), jo);
  if (!pipeline) return fail(pipeline.error());

  auto abandon = [&](const Error& err) -> Result<ObjectInfo> {
    (void)pipeline->publish_async_complete(js_.timeout());
    (void)js_.purge_stream(stream(), chunks_subject);
    return fail(err.wrap("put " + meta.name));
  };

  crypto::Sha256 sha;
  std::string chunk(kChunkSize, '\0');
  for (bool eof = false; !eof;) {
    size_t filled = 0;
    while (filled < kChunkSize) {
      auto n = reader(std::span<char>(chunk.data() + filled, kChunkSize - filled));
      if (!n) return abandon(n.error());
      if (*n == 0) {
        eof = true;
        break;
      }
      filled += *n;
    }
    if (filled == 0) break;
    const std::string_view data(chunk.data(), filled);
    sha.update(as_bytes(data));
    auto msg = Message::create(chunks_subject, data);
    if (!msg) return abandon(msg.error());
    if (auto st = pipeline->publish_async(std::move(*msg)); !st) return abandon(st.error());
    info.size += filled;
    info.chunks += 1;
  }
  if (auto st = pipeline->publish_async_complete(js_.timeout()); !st) return abandon(st.error());

  info.digest = digest_string(sha.finish());
  info.mtime = rfc3339_nano(std::chrono::system_clock::now());
  if (auto st = publish_meta(info); !st) return abandon(st.error());
  if (!old_nuid.empty() && old_nuid != info.nuid) {
    // The new version is in place; a failure here leaves only unreachable chunks behind.
    (void)js_.purge_stream(stream(), chunk_subject(old_nuid));
  }
  return info;
}

Result<ObjectInfo> ObjectStore::put_bytes(const std::string& name, std::string_view data) const {
  size_t offset = 0;
  return put(ObjectMeta{name, {}, {}}, [&](std::span<char> buf) -> Result<size_t> {
    const size_t n = std::min(buf.size(), data.size() - offset);
    std::memcpy(buf.data(), data.data() + offset, n);
    offset += n;
    return n;
  });
}

Result<ObjectInfo> ObjectStore::put_file(const std::string& name,
                                         const std::filesystem::path& path) const {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(ErrorCode::kNotFound, "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  return put(ObjectMeta{name, {}, {}}, [&](std::span<char> buf) -> Result<size_t> {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.bad()) return fail(ErrorCode::kIo, "read " + path.string() + " failed");
    return static_cast<size_t>(in.gcount());
  });
}

Result<ObjectInfo> ObjectStore::info(const std::string& name) const {
  NEX_RETURN_IF_ERROR(validate_name(name));
  auto msg = js_.last_message(stream(), meta_subject(name));
  if (!msg) {
    if (msg.error().code == ErrorCode::kNotFound) {
      return fail(ErrorCode::kNotFound,
                  "object '" + name + "' not found in bucket '" + bucket_ + "'");
    }
    return fail(msg.error());
  }
  auto info = object_info_from_json(msg->data());
  if (!info) return fail(info.error().wrap("object '" + name + "'"));
  if (info->deleted) {
    return fail(ErrorCode::kNotFound,
                "object '" + name + "' not found in bucket '" + bucket_ + "' (deleted)");
  }
  return info;
}

Result<ObjectInfo> ObjectStore::get(const std::string& name, const ObjectWriter& writer) const {
  auto found = info(name);
  if (!found) return found;
  crypto::Sha256 sha;
  uint64_t received = 0;
  if (found->chunks > 0) {
    auto sub = js_.ordered_consumer(stream(), chunk_subject(found->nuid));
    if (!sub) return fail(sub.error().wrap("get " + name));
    for (uint32_t i = 0; i < found->chunks; ++i) {
      auto msg = sub->next(js_.timeout());
      if (!msg) {
        return fail(ErrorCode::kCorrupt, "get " + name + ": chunk " + std::to_string(i + 1) +
                                             " of " + std::to_string(found->chunks) + " missing (" +
                                             msg.error().message + ")");
      }
      const std::string_view data = msg->data();
      received += data.size();
      if (received > found->size) break;
      sha.update(as_bytes(data));
      NEX_RETURN_IF_ERROR(writer(data));
    }
  }
  if (received != found->size) {
    return fail(ErrorCode::kCorrupt, "get " + name + ": size mismatch, expected " +
                                         std::to_string(found->size) + " bytes, read " +
                                         std::to_string(received));
  }
  if (!found->digest.empty() && !digest_matches(found->digest, sha.finish())) {
    return fail(ErrorCode::kCorrupt, "get " + name + ": SHA-256 digest mismatch");
  }
  return found;
}

Result<std::string> ObjectStore::get_bytes(const std::string& name) const {
  std::string out;
  auto got = get(name, [&](std::string_view chunk) -> Status {
    out.append(chunk);
    return {};
  });
  if (!got) return fail(got.error());
  return out;
}

Result<ObjectInfo> ObjectStore::get_file(const std::string& name,
                                         const std::filesystem::path& path) const {
  const std::filesystem::path partial = path.string() + ".partial";
  // O_CLOEXEC: a process forked meanwhile must not inherit a writable descriptor, or executing
  // the file later fails with ETXTBSY (and the child would hold it open for its lifetime).
  const int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail(ErrorCode::kIo, "cannot write " + partial.string() + ": " + std::strerror(errno));
  }
  auto got = get(name, [&](std::string_view chunk) -> Status {
    while (!chunk.empty()) {
      const ssize_t n = ::write(fd, chunk.data(), chunk.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        return fail(ErrorCode::kIo, "write " + partial.string() + ": " + std::strerror(errno));
      chunk.remove_prefix(static_cast<size_t>(n));
    }
    return {};
  });
  if (::close(fd) != 0 && got) got = fail(ErrorCode::kIo, "write " + partial.string() + " failed");
  std::error_code ec;
  if (got) std::filesystem::rename(partial, path, ec);
  if (!got || ec) {
    std::filesystem::remove(partial, ec);
    if (got) return fail(ErrorCode::kIo, "rename to " + path.string() + " failed");
  }
  return got;
}

Result<std::vector<ObjectInfo>> ObjectStore::list() const {
  std::vector<ObjectInfo> out;
  auto sub = js_.ordered_consumer(stream(), "$O." + bucket_ + ".M.>", js_DeliverLastPerSubject);
  if (!sub) return fail(sub.error().wrap("list " + bucket_));
  auto backlog = js_.backlog(*sub);
  if (!backlog) return fail(backlog.error().wrap("list " + bucket_));
  if (*backlog == 0) return out;
  for (;;) {
    auto msg = sub->next(js_.timeout());
    if (!msg) return fail(msg.error().wrap("list " + bucket_));
    auto info = object_info_from_json(msg->data());
    if (info && !info->deleted) out.push_back(std::move(*info));
    auto meta = JetStream::metadata(*msg);
    if (!meta) return fail(meta.error());
    if (meta->num_pending == 0) break;
  }
  return out;
}

Status ObjectStore::remove(const std::string& name) const {
  auto found = info(name);
  if (!found) return fail(found.error());
  ObjectInfo tombstone = *found;
  tombstone.deleted = true;
  tombstone.size = 0;
  tombstone.chunks = 0;
  tombstone.digest.clear();
  tombstone.mtime = rfc3339_nano(std::chrono::system_clock::now());
  NEX_RETURN_IF_ERROR(publish_meta(tombstone));
  return js_.purge_stream(stream(), chunk_subject(found->nuid));
}

std::string digest_hex(std::string_view digest) {
  if (!digest.starts_with(kDigestPrefix)) return {};
  const std::string_view b64 = digest.substr(kDigestPrefix.size());
  for (Base64 v : {Base64::kUrl, Base64::kUrlNoPad, Base64::kStandard, Base64::kStandardNoPad}) {
    if (auto raw = base64_decode(b64, v); raw && raw->size() == crypto::Sha256Digest{}.size())
      return hex_encode(*raw);
  }
  return {};
}

}  // namespace nex::nats
