// The escape workload (tests/fixtures/native/escape.c) also aims at the node's control plane
// through the host-service RPC a native workload uses: messaging to the node's buckets, to the
// JetStream and server APIs and to inboxes, and key-value calls naming another namespace's bucket
// or another workload's id. These are what a test passes it for that, the checks it must report
// refused (and why), and the state those attempts aim at, taken before the escape runs and
// compared once it is done: an attempt the node wrongly let through shows there even if the
// workload's report were wrong.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nats/jetstream.h"
#include "nats/key_value.h"
#include "nats/object_store.h"
#include "node/node.h"
#include "testing/node_fixture.h"

namespace nex::testing {

// Another namespace's workload, whose host-service bucket (hs_victim_vault_kv) holds a secret.
inline constexpr const char* kVictimNamespace = "victim";
inline constexpr const char* kVictimWorkload = "vault";

// What the escape workload needs in its environment to try the control plane of `node`.
inline std::map<std::string, std::string> control_plane_escape_env(const node::Node& node) {
  return {{"ESCAPE_NODE_ID", node.id()},
          {"ESCAPE_NODE_NAME", node.name()},
          {"ESCAPE_VICTIM", std::string(kVictimNamespace) + "." + kVictimWorkload}};
}

// Each check the escape reports for these attempts, and what its line must say: the node's or
// the NATS server's reason for refusing it.
inline std::vector<std::pair<std::string, std::string>> control_plane_checks() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const char* target : {"node-workloads", "node-record", "cli-files-chunk", "cli-files-meta",
                             "stream-list", "system", "inbox", "other-bucket"})
    for (const char* method : {"publish", "request", "requestMany"})
      out.emplace_back(std::string("hs-") + method + "-" + target, "' is reserved: ");
  const std::string other_namespace = std::string("may not use the host services of ") +
                                      kVictimWorkload + " in namespace " + kVictimNamespace;
  out.emplace_back("hs-kv-get-other-namespace", other_namespace);
  out.emplace_back("hs-kv-set-other-namespace", other_namespace);
  out.emplace_back("hs-kv-set-other-workload", "Permissions Violation");
  return out;
}

// Each of those checks in the escape's log `logs`, refused for its reason.
inline void expect_control_plane_refused(Collector& logs) {
  for (const auto& [check, refusal] : control_plane_checks()) {
    auto line = logs.wait_for("check " + check + ": ", 1s);
    ASSERT_TRUE(line) << "no report for " << check;
    EXPECT_NE(line->second.find(": contained: "), std::string::npos) << line->second;
    EXPECT_NE(line->second.find(refusal), std::string::npos) << line->second;
  }
}

// The node's kept workloads, its record, the uploaded artifacts and the victim's bucket.
class ControlPlaneState {
 public:
  // Fills the victim's bucket (afresh), then takes stock.
  void take(const nats::JetStream& js, const node::Node& node) {
    js_ = &js;
    node_id_ = node.id();
    node_name_ = node.name();
    (void)nats::KeyValue::remove_bucket(js, victim_bucket());
    auto victim = nats::KeyValue::create(js, {.bucket = victim_bucket()});
    ASSERT_TRUE(victim) << victim.error().message;
    ASSERT_TRUE(victim->put("secret", "s3cret"));
    kept_ = keys("NEX_NODE_WORKLOADS");
    auto record = nats::KeyValue::bind(js, "NEX_NODES")->get(node_name_);
    ASSERT_TRUE(record) << "node " << node_name_ << " has no record: " << record.error().message;
    record_ = *record;
    nodes_ = keys("NEX_NODES");
    ASSERT_NO_FATAL_FAILURE(last_sequence("OBJ_NEXCLIFILES", &files_last_));
    ASSERT_NO_FATAL_FAILURE(last_sequence("KV_" + victim_bucket(), &victim_last_));
    files_ = objects();
  }

  // A failure for each change, but the records of the workloads in `deployed` (ids) in
  // NEX_NODE_WORKLOADS, which the node writes as it deploys them.
  void expect_unchanged(const std::vector<std::string>& deployed) const {
    auto kept = keys("NEX_NODE_WORKLOADS");
    std::erase_if(kept, [&](const std::string& key) {
      return std::any_of(deployed.begin(), deployed.end(),
                         [&](const std::string& id) { return key == node_id_ + "." + id; });
    });
    EXPECT_EQ(kept, kept_) << "NEX_NODE_WORKLOADS changed";
    auto record = nats::KeyValue::bind(*js_, "NEX_NODES")->get(node_name_);
    ASSERT_TRUE(record) << "the node's record is gone: " << record.error().message;
    EXPECT_EQ(record->revision, record_.revision) << "the node's record in NEX_NODES was replaced";
    EXPECT_EQ(record->value, record_.value);
    EXPECT_EQ(keys("NEX_NODES"), nodes_) << "NEX_NODES changed";
    EXPECT_EQ(last_sequence_or_zero("OBJ_NEXCLIFILES"), files_last_)
        << "something was written to NEXCLIFILES";
    EXPECT_EQ(objects(), files_) << "NEXCLIFILES lists other objects";
    EXPECT_EQ(last_sequence_or_zero("KV_" + victim_bucket()), victim_last_)
        << "something was written to " << victim_bucket();
    EXPECT_EQ(keys(victim_bucket()), std::vector<std::string>{"secret"});
  }

 private:
  static std::string victim_bucket() {
    return std::string("hs_") + kVictimNamespace + "_" + kVictimWorkload + "_kv";
  }
  // The keys of KV bucket `bucket`, sorted.
  std::vector<std::string> keys(const std::string& bucket) const {
    auto kv = nats::KeyValue::bind(*js_, bucket);
    if (!kv) return {"<no bucket " + bucket + ": " + kv.error().message + ">"};
    auto k = kv->keys();
    if (!k) return {};
    std::sort(k->begin(), k->end());
    return *k;
  }
  // The names of the objects in NEXCLIFILES, sorted.
  std::vector<std::string> objects() const {
    std::vector<std::string> names;
    auto files = nats::ObjectStore::bind(*js_, "NEXCLIFILES");
    if (!files) return {"<no bucket NEXCLIFILES: " + files.error().message + ">"};
    auto list = files->list();
    if (!list) return {"<cannot list NEXCLIFILES: " + list.error().message + ">"};
    for (const auto& info : *list) names.push_back(info.name);
    std::sort(names.begin(), names.end());
    return names;
  }
  void last_sequence(const std::string& stream, uint64_t* out) const {
    auto info = js_->stream_info(stream);
    ASSERT_TRUE(info) << stream << ": " << info.error().message;
    *out = info->last_sequence;
  }
  uint64_t last_sequence_or_zero(const std::string& stream) const {
    auto info = js_->stream_info(stream);
    return info ? info->last_sequence : 0;
  }

  const nats::JetStream* js_ = nullptr;
  std::string node_id_, node_name_;
  std::vector<std::string> kept_, nodes_, files_;
  nats::KvEntry record_;
  uint64_t files_last_ = 0, victim_last_ = 0;
};

}  // namespace nex::testing
