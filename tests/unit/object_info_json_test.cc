#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "nats/object_store.h"

namespace nex::nats {
namespace {

using nlohmann::json;

TEST(ObjectInfoJson, WritesTheAdr20Shape) {
  ObjectInfo info;
  info.name = "dir/file name?.bin";
  info.bucket = "B";
  info.nuid = "ABCDEFGHIJKLMNOPQRSTUV";
  info.size = 131073;
  info.chunks = 2;
  info.max_chunk_size = 131072;
  info.digest = "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=";
  info.mtime = "2026-11-22T10:00:00.000000001Z";
  json j = json::parse(object_info_to_json(info));
  EXPECT_EQ(j["name"], "dir/file name?.bin");
  EXPECT_EQ(j["bucket"], "B");
  EXPECT_EQ(j["nuid"], "ABCDEFGHIJKLMNOPQRSTUV");
  EXPECT_EQ(j["size"], 131073);
  EXPECT_EQ(j["chunks"], 2);
  EXPECT_EQ(j["options"]["max_chunk_size"], 131072);
  EXPECT_EQ(j["digest"], info.digest);
  EXPECT_EQ(j["mtime"], info.mtime);
  EXPECT_FALSE(j.contains("deleted"));      // only when true
  EXPECT_FALSE(j.contains("description"));  // omitted when empty
  EXPECT_FALSE(j.contains("headers"));
}

TEST(ObjectInfoJson, NeverWritesAnEmptyMtime) {
  ObjectInfo info;
  info.name = "x";
  info.deleted = true;
  json j = json::parse(object_info_to_json(info));
  EXPECT_FALSE(j.contains("mtime"));
  EXPECT_EQ(j["deleted"], true);
}

TEST(ObjectInfoJson, ReadsWhatTheGoClientWrites) {
  // As nats.go writes it (zero-value mtime, headers, description, link-less options).
  const char* go = R"({"name":"echoservice","description":"d","headers":{"K":["v1","v2"]},
    "options":{"max_chunk_size":131072},"bucket":"NEXCLIFILES","nuid":"ZxlfxU0S3wSaYU8xgGpJAc",
    "size":5,"mtime":"0001-01-01T00:00:00Z","chunks":1,
    "digest":"SHA-256=LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="})";
  auto info = object_info_from_json(go);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->name, "echoservice");
  EXPECT_EQ(info->description, "d");
  EXPECT_EQ(info->headers.at("K"), (std::vector<std::string>{"v1", "v2"}));
  EXPECT_EQ(info->size, 5u);
  EXPECT_EQ(info->chunks, 1u);
  EXPECT_EQ(info->max_chunk_size, 131072u);
  EXPECT_FALSE(info->deleted);
}

TEST(ObjectInfoJson, RejectsWrongTypes) {
  EXPECT_FALSE(object_info_from_json("not json"));
  EXPECT_FALSE(object_info_from_json("[]"));
  auto r = object_info_from_json(R"({"name":"x","size":"big"})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kCorrupt);
}

}  // namespace
}  // namespace nex::nats
