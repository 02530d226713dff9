#include "node/workload_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nats/jetstream.h"
#include "nats/key_value.h"

namespace nex::node {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kBucket = "NEX_NODE_WORKLOADS";

std::string encode(const WorkloadStore::Entry& e) {
  return json{{"namespace", e.ns}, {"request", e.request}}.dump();
}

std::optional<WorkloadStore::Entry> decode(const std::string& id, std::string_view text) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("request") || !j["request"].is_string()) return std::nullopt;
  return WorkloadStore::Entry{id, j.value("namespace", "default"), j["request"]};
}

class KvStore : public WorkloadStore {
 public:
  KvStore(nats::KeyValue kv, std::string node_id)
      : kv_(std::move(kv)), prefix_(std::move(node_id) + ".") {}

  Status put(const Entry& e) override {
    NEX_RETURN_IF_ERROR(kv_.put(prefix_ + e.id, encode(e)));
    return {};
  }
  Status erase(const std::string& id) override { return kv_.purge(prefix_ + id); }
  Result<std::vector<Entry>> list() override {
    auto keys = kv_.keys();
    if (!keys) {
      if (keys.error().code == ErrorCode::kNotFound) return std::vector<Entry>{};
      return fail(keys.error());
    }
    std::vector<Entry> out;
    for (const auto& key : *keys) {
      if (!key.starts_with(prefix_)) continue;
      auto e = kv_.get(key);
      if (!e) continue;
      if (auto entry = decode(key.substr(prefix_.size()), e->value)) out.push_back(*entry);
    }
    return out;
  }

 private:
  nats::KeyValue kv_;
  std::string prefix_;
};

class DirStore : public WorkloadStore {
 public:
  explicit DirStore(fs::path dir) : dir_(std::move(dir)) {}

  Status put(const Entry& e) override {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    // Written whole, then renamed: a crash leaves the old entry or the new one.
    const fs::path tmp = dir_ / (e.id + ".tmp");
    {
      const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) return fail(ErrorCode::kIo, "cannot write " + tmp.string());
      const std::string text = encode(e);
      const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
      ::close(fd);
      if (!ok) return fail(ErrorCode::kIo, "cannot write " + tmp.string());
    }
    fs::rename(tmp, dir_ / (e.id + ".json"), ec);
    if (ec) return fail(ErrorCode::kIo, "cannot write " + (dir_ / e.id).string());
    return {};
  }
  Status erase(const std::string& id) override {
    std::error_code ec;
    fs::remove(dir_ / (id + ".json"), ec);
    return {};
  }
  Result<std::vector<Entry>> list() override {
    std::vector<Entry> out;
    std::error_code ec;
    for (const auto& f : fs::directory_iterator(dir_, ec)) {
      if (f.path().extension() != ".json") continue;
      std::ifstream in(f.path());
      std::stringstream text;
      text << in.rdbuf();
      if (auto e = decode(f.path().stem().string(), text.str())) out.push_back(*e);
    }
    return out;
  }

 private:
  fs::path dir_;
};

}  // namespace

std::unique_ptr<WorkloadStore> WorkloadStore::open(const nats::Connection& control,
                                                   const std::string& node_id,
                                                   const fs::path& state_dir, std::string& where) {
  if (auto js = nats::JetStream::create(control)) {
    auto kv = nats::KeyValue::bind(*js, kBucket);
    if (!kv)
      kv = nats::KeyValue::create(
          *js, {.bucket = kBucket, .description = "nex nodes' workloads, to restore on restart"});
    if (kv) {
      where = std::string("KV bucket ") + kBucket;
      return std::make_unique<KvStore>(std::move(*kv), node_id);
    }
  }
  where = (state_dir / "workloads").string();
  return std::make_unique<DirStore>(state_dir / "workloads");
}

}  // namespace nex::node
