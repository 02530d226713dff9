#include "node/workload_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "api/json_fields.h"
#include "core/encoding.h"
#include "core/file_io.h"
#include "nats/jetstream.h"
#include "nats/key_value.h"

namespace nex::node {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kBucket = "NEX_NODE_WORKLOADS";

// Writes `text` to `path` whole (mode 0600), then renames it into place: a crash leaves the old
// file or the new one.
Status replace_file(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(ErrorCode::kIo, "cannot write " + tmp.string() + ": " + strerror(errno));
  const ssize_t n = ::write(fd, text.data(), text.size());
  const int err = n < 0 ? errno : ENOSPC;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size()))
    return fail(ErrorCode::kIo, "cannot write " + tmp.string() + ": " + strerror(err));
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return fail(ErrorCode::kIo, "cannot replace " + path.string() + ": " + strerror(errno));
  return {};
}

class KvBackend : public WorkloadStore::Backend {
 public:
  KvBackend(nats::KeyValue kv, std::string node_id)
      : kv_(std::move(kv)), prefix_(std::move(node_id) + ".") {}

  Status put(const std::string& id, const std::string& value) override {
    NEX_RETURN_IF_ERROR(kv_.put(prefix_ + id, value));
    return {};
  }
  Status erase(const std::string& id) override { return kv_.purge(prefix_ + id); }
  Result<std::vector<std::pair<std::string, std::string>>> list() override {
    auto keys = kv_.keys();
    if (!keys) {
      if (keys.error().code == ErrorCode::kNotFound)
        return std::vector<std::pair<std::string, std::string>>{};
      return fail(keys.error());
    }
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& key : *keys) {
      if (!key.starts_with(prefix_)) continue;
      auto e = kv_.get(key);
      if (!e) {
        if (e.error().code == ErrorCode::kNotFound) continue;  // removed meanwhile
        return fail(e.error());
      }
      out.emplace_back(key.substr(prefix_.size()), std::move(e->value));
    }
    return out;
  }
  Result<size_t> refresh(std::chrono::seconds age) override {
    auto keys = kv_.keys();
    if (!keys)
      return keys.error().code == ErrorCode::kNotFound ? Result<size_t>(0) : fail(keys.error());
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    size_t written = 0;
    for (const auto& key : *keys) {
      if (!key.starts_with(prefix_)) continue;
      auto e = kv_.get(key);
      if (!e || now - std::chrono::nanoseconds(e->created_ns) < age) continue;
      NEX_RETURN_IF_ERROR(kv_.put(key, e->value));
      ++written;
    }
    return written;
  }

 private:
  nats::KeyValue kv_;
  std::string prefix_;
};

class DirBackend : public WorkloadStore::Backend {
 public:
  explicit DirBackend(fs::path dir) : dir_(std::move(dir)) {}

  Status put(const std::string& id, const std::string& value) override {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    return replace_file(dir_ / (id + ".json"), value);
  }
  Status erase(const std::string& id) override {
    std::error_code ec;
    fs::remove(dir_ / (id + ".json"), ec);
    return {};
  }
  Result<std::vector<std::pair<std::string, std::string>>> list() override {
    std::vector<std::pair<std::string, std::string>> out;
    std::error_code ec;
    for (const auto& f : fs::directory_iterator(dir_, ec)) {
      if (f.path().extension() != ".json") continue;
      out.emplace_back(f.path().stem().string(), read_file(f.path()).value_or(""));
    }
    return out;
  }

 private:
  fs::path dir_;
};

}  // namespace

Result<std::unique_ptr<WorkloadStore>> WorkloadStore::open(
    const nats::Connection& control, const crypto::KeyPair& node_key, const fs::path& state_dir,
    const StorageCaps& caps, const nats::ReplicaPolicy& replicas, std::string& where) {
  std::unique_ptr<Backend> backend;
  if (auto js = nats::JetStream::create(control)) {
    auto kv = nats::KeyValue::bind(*js, kBucket);
    if (!kv)
      kv =
          nats::KeyValue::create(*js, {.bucket = kBucket,
                                       .description = "nex nodes' workloads, to restore on restart",
                                       .replicas = replicas.replicas});
    if (kv) {
      auto capped = js->set_caps(std::string("KV_") + kBucket, caps.stream_caps());
      where = std::string("KV bucket ") + kBucket + " (" + to_string(caps.stream_caps()) + ")";
      if (!capped)  // the bucket still works; the operator learns why its caps are not these
        where += "; WARNING: cannot set its caps: " + capped.error().message;
      else if (!capped->empty())
        where += "; caps changed: " + *capped;
      auto replicated = js->keep_replicas(std::string("KV_") + kBucket, replicas);
      if (!replicated)
        where += "; WARNING: cannot check its replicas: " + replicated.error().message;
      else if (!replicated->empty())
        where += "; " + *replicated;
      backend = std::make_unique<KvBackend>(std::move(*kv), node_key.public_key());
    }
  }
  if (!backend) {
    where = (state_dir / "workloads").string();
    backend = std::make_unique<DirBackend>(state_dir / "workloads");
  }
  std::unique_ptr<WorkloadStore> store(
      new WorkloadStore(std::move(backend), node_key, state_dir / "workloads.kept"));
  NEX_RETURN_IF_ERROR(store->load_kept());
  return store;
}

Status WorkloadStore::load_kept() {
  std::ifstream in(kept_file_);
  if (!in) {
    if (!fs::exists(kept_file_)) return {};  // a new node keeps nothing yet
    return fail(ErrorCode::kIo, "cannot read " + kept_file_.string() + ": " + std::strerror(errno));
  }
  for (std::string id; std::getline(in, id);)
    if (!id.empty()) kept_.insert(id);
  return {};
}

Status WorkloadStore::save_kept() {
  std::string text;
  for (const auto& id : kept_) text += id + "\n";
  return replace_file(kept_file_, text);
}

std::string WorkloadStore::signing_bytes(const Entry& e) const {
  return api::dump({{"id", e.id},
                    {"namespace", e.ns},
                    {"node_id", node_key_.public_key()},
                    {"request", e.request}});
}

Status WorkloadStore::put(const Entry& e) {
  {
    std::lock_guard lock(mu_);
    // Listed as kept first: an entry that is kept nowhere can never be restored.
    if (kept_.insert(e.id).second) NEX_RETURN_IF_ERROR(save_kept());
  }
  const auto signature = node_key_.sign(as_bytes(signing_bytes(e)));
  return backend_->put(e.id,
                       api::dump({{"namespace", e.ns},
                                  {"request", e.request},
                                  {"signature", base64_encode(signature, Base64::kUrlNoPad)}}));
}

Status WorkloadStore::erase(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    if (kept_.erase(id) > 0) NEX_RETURN_IF_ERROR(save_kept());
  }
  return backend_->erase(id);
}

Result<WorkloadStore::Listing> WorkloadStore::list() {
  auto stored = backend_->list();
  if (!stored) return fail(stored.error());
  Listing out;
  std::set<std::string> seen;
  std::lock_guard lock(mu_);
  for (auto& [id, value] : *stored) {
    seen.insert(id);
    auto j = json::parse(value, nullptr, false);
    if (!j.is_object() || !j["request"].is_string() || !j["namespace"].is_string() ||
        !j["signature"].is_string()) {
      out.refused.emplace_back(id, "the entry is not one this node wrote (no signature)");
      continue;
    }
    Entry e{id, j["namespace"], j["request"]};
    auto sig = base64_decode(j["signature"].get<std::string>(), Base64::kUrlNoPad);
    if (!sig ||
        !crypto::verify(node_key_.public_key(), as_bytes(signing_bytes(e)), *sig).has_value()) {
      out.refused.emplace_back(id, "the entry's signature is not this node's");
    } else if (kept_.count(id) == 0) {
      out.refused.emplace_back(id, "this node does not keep that workload (stopped or ended)");
    } else {
      out.entries.push_back(std::move(e));
    }
  }
  for (const auto& id : kept_)
    if (seen.count(id) == 0) out.missing.push_back(id);
  return out;
}

}  // namespace nex::node
