#include "api/subject_policy.h"

#include <gtest/gtest.h>

namespace nex::api {
namespace {

TEST(SubjectPolicy, ReservedSubjectsAreRefusedWithTheirReason) {
  SubjectPolicy p;
  for (const char* s :
       {"$JS.API.INFO", "$KV.NEX_NODES.n1", "$O.NEXCLIFILES.C.x", "$SYS.REQ.X", "$SRV.PING",
        "$NEX.DEPLOY.default", "$G", "_INBOX.abc", "_INBOX_W1.x", "_R_.x", "*", ">", "*.ping", ">"})
    EXPECT_NE(p.refusal(s).find("is reserved"), std::string::npos) << s;
  for (const char* s : {"svc.echo", "news.>", "a.*.b", "INBOX.x", "x.$KV.y", "__INBOX"})
    EXPECT_EQ(p.refusal(s), "") << s;
}

TEST(SubjectPolicy, AGrantOpensOnlyPatternsWhollyInsideIt) {
  auto p = SubjectPolicy::with_grants({"$SRV.>", "$KV.shared.>"});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->refusal("$SRV.PING"), "");
  EXPECT_EQ(p->refusal("$SRV.PING.echo.*"), "");
  EXPECT_EQ(p->refusal("$KV.shared.k1"), "");
  EXPECT_NE(p->refusal("$KV.other.k1"), "");
  EXPECT_NE(p->refusal("$KV.*.k1"), "") << "a wildcard bucket reaches beyond the grant";
  EXPECT_NE(p->refusal("$KV.>"), "");
  EXPECT_NE(p->refusal("$SRV"), "") << "'>' needs at least one more token";
}

TEST(SubjectPolicy, TheNodesOwnSpaceCanNeverBeGranted) {
  for (const char* g :
       {"$JS.>", "$JS.API.STREAM.INFO.X", "$SYS.>", "$NEX.>", "_INBOX.>", "_R_.>", ">", "*.x",
        "$KV.>", "$KV.*.x", "$KV.NEX_NODES.>", "$KV.NEX_NODE_WORKLOADS.>", "$O.NEXCLIFILES.>",
        "$KV.hs_default_echo_kv.>", ""}) {
    auto p = SubjectPolicy::with_grants({g});
    ASSERT_FALSE(p) << g << " was accepted";
    EXPECT_NE(p.error().message.find("field 'subject_grants'"), std::string::npos);
  }
}

TEST(SubjectPolicy, CoversComparesPatterns) {
  EXPECT_TRUE(subject_covers(">", "a.b"));
  EXPECT_TRUE(subject_covers("a.>", "a.b.>"));
  EXPECT_FALSE(subject_covers("a.>", "a"));
  EXPECT_TRUE(subject_covers("a.*", "a.*"));
  EXPECT_FALSE(subject_covers("a.*", "a.>"));
  EXPECT_FALSE(subject_covers("a.b", "a.*"));
  EXPECT_TRUE(subject_covers("a.*.c", "a.b.c"));
  EXPECT_FALSE(subject_covers("a.b", "a.b.c"));
}

}  // namespace
}  // namespace nex::api
