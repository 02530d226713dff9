// Host services through a real node, nats-server with JetStream, agents and functions: every
// method from JavaScript (tests/fixtures/js/host_services.js) and from WebAssembly
// (tests/fixtures/wasm/host_services.c, built against sdk/wasm/nex.h), HTTP against a local
// server, and the node's refusals: denied subjects, and the HTTP service's network policy (no
// loopback, private or link-local address unless the node's allow list opens it, never the
// node's own ports).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "nats/key_value.h"
#include "testing/dns_server.h"
#include "testing/http_server.h"
#include "testing/network_namespace.h"
#include "testing/node_fixture.h"

namespace nex::node {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::Collector;
namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

testing::HttpResponse http_handler(const testing::HttpRequest& req) {
  if (req.path == "/hello")
    return {200, {{"X-Greeting", "hi"}, {"Content-Type", "text/plain"}}, "hello from http"};
  if (req.path == "/echo") {
    json seen = {{"method", req.method},
                 {"custom", req.headers.count("x-custom") ? req.headers.at("x-custom") : ""},
                 {"body", req.body}};
    return {201, {{"Content-Type", "application/json"}}, seen.dump()};
  }
  if (req.path == "/moved") return {302, {{"Location", "/hello"}}, ""};
  if (req.path == "/slow") {
    std::this_thread::sleep_for(2s);
    return {200, {}, "too late"};
  }
  return {404, {}, "no such page"};
}

// A node on a real nats-server with the host-services JavaScript function deployed (and the
// WebAssembly one, when built); each fixture below configures the node its own way.
class HostServicesNodeTest : public testing::NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_OK(files_->put_bytes(
        "hs.js", read_file(fs::path(NEX_SOURCE_DIR) / "tests/fixtures/js/host_services.js")));
    wasm_built_ = fs::exists(fs::path(NEX_WASM_DIR) / "host_services.wasm");
    if (wasm_built_)
      ASSERT_OK(files_->put_file("hs.wasm", fs::path(NEX_WASM_DIR) / "host_services.wasm"));
  }

  // Starts the node with `config`, then deploys the functions.
  void start_with(NodeConfig config, bool with_wasm) {
    start_node(config);
    if (HasFatalFailure()) return;
    deploy_function("hsjs", "hs.js", "v8", "hs.js");
    if (with_wasm && wasm_built_) deploy_function("hswasm", "hs.wasm", "wasm", "hs.wasm");
  }

  void deploy_function(const std::string& name, const std::string& key, const std::string& type,
                       const std::string& trigger) {
    json req = function_request(name, key, {trigger});
    req["type"] = type;
    json r = deploy(req);
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
  }

  void need_wasm() {
    if (!wasm_built_)
      GTEST_SKIP() << "the wasm test modules were not built (clang with wasi-libc missing)";
  }

  // Asks the JavaScript function to do `op`; its answer, or {"error": the error reply}.
  json js(const json& op) { return js_on("hs.js", op); }
  // The same, for a JavaScript function triggered on `subject`.
  json js_on(const std::string& subject, const json& op) {
    auto r = conn_->request(subject, op.dump(), 15s);
    if (!r) return {{"transport_error", r.error().message}};
    if (auto e = r->header("Nats-Service-Error")) return {{"error", *e}};
    return json::parse(r->data());
  }
  // Asks the WebAssembly function: "op\nfirst\nrest"; its output, or "ERROR: ...".
  std::string wasm(const std::string& op, const std::string& first = "",
                   const std::string& rest = "") {
    auto r = conn_->request("hs.wasm", op + "\n" + first + "\n" + rest, 15s);
    if (!r) return "TRANSPORT: " + r.error().message;
    if (auto e = r->header("Nats-Service-Error")) return "ERROR: " + *e;
    return std::string(r->data());
  }

  bool wasm_built_ = false;
};

// allow_networks as the node config would give it.
host_services::NetworkAllowList allow(const std::vector<std::string>& entries) {
  auto list = host_services::NetworkAllowList::parse(entries);
  EXPECT_TRUE(list) << list.error().message;
  return list ? *list : host_services::NetworkAllowList{};
}

class HostServicesTest : public HostServicesNodeTest {
 protected:
  void SetUp() override {
    HostServicesNodeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    NodeConfig config;
    config.host_services_settings.object_store.caps.max_bytes = 16 << 20;  // room for 5 MiB
    config.host_services_settings.http.timeout_ms = 800;
    config.host_services_settings.messaging.deny_subjects = {"secret.>"};
    config.host_services_settings.http.allow_hosts = {"127.0.0.1", "0.0.0.0"};
    // The test's web server is on loopback, which only the allow list opens.
    config.host_services_settings.http.allow_networks = allow({"127.0.0.1/32"});
    start_with(config, /*with_wasm=*/true);
  }
};

TEST_F(HostServicesTest, KeyValueFromJavaScript) {
  json set = js({{"op", "kv.set"}, {"key", "hello"}, {"value", "world"}});
  EXPECT_EQ(set["success"], true) << set.dump();
  EXPECT_GE(set["revision"].get<int64_t>(), 1);
  EXPECT_EQ(js({{"op", "kv.get"}, {"key", "hello"}})["value"], "world");
  EXPECT_TRUE(js({{"op", "kv.get"}, {"key", "hello2"}})["value"].is_null()) << "a missing key";
  js({{"op", "kv.set"}, {"key", "other"}, {"value", "x"}});
  EXPECT_EQ(js({{"op", "kv.keys"}}), json::array({"hello", "other"}));

  // It really is in JetStream, in the workload's own bucket.
  auto kv = nats::KeyValue::bind(*js_, "hs_default_hsjs_kv");
  ASSERT_TRUE(kv) << kv.error().message;
  EXPECT_EQ(kv->get("hello")->value, "world");

  EXPECT_EQ(js({{"op", "kv.delete"}, {"key", "hello"}})["deleted"], "hello");
  EXPECT_TRUE(js({{"op", "kv.get"}, {"key", "hello"}})["value"].is_null());
  // A bad key is the service's error, thrown as an exception.
  json bad = js({{"op", "kv.get"}, {"key", "no spaces allowed"}});
  EXPECT_NE(bad.value("error", "").find("hostServices.kv.get"), std::string::npos) << bad.dump();
}

TEST_F(HostServicesTest, KeyValueFromWebAssembly) {
  need_wasm();
  EXPECT_EQ(wasm("kv_get", "greeting").substr(0, 5), "-404\n") << "a missing key";
  std::string set = wasm("kv_set", "greeting", "hello wasm");
  EXPECT_NE(set.find("\"success\":true"), std::string::npos) << set;
  EXPECT_EQ(wasm("kv_get", "greeting"), "10\nhello wasm");
  EXPECT_EQ(wasm("kv_keys"), "12\n[\"greeting\"]");
  EXPECT_EQ(wasm("kv_delete", "greeting").substr(0, 2), "16");
  EXPECT_EQ(wasm("kv_get", "greeting").substr(0, 5), "-404\n");
  // Each workload has its own bucket: the JavaScript function's key is not here.
  js({{"op", "kv.set"}, {"key", "mine"}, {"value", "js"}});
  EXPECT_EQ(wasm("kv_get", "mine").substr(0, 5), "-404\n");
}

// Namespace "a_b" with workload "c" and namespace "a" with workload "b_c" join to the same
// "a_b_c": their buckets must differ all the same, or one tenant reads the other's data.
TEST_F(HostServicesTest, NamesThatJoinAlikeStillGetTheirOwnBuckets) {
  struct Tenant {
    std::string ns, name, trigger;
  };
  const Tenant tenants[] = {{"a_b", "c", "hs.ab.c"}, {"a", "b_c", "hs.a.bc"}};
  for (const Tenant& t : tenants) {
    json r = deploy(function_request(t.name, "hs.js", {t.trigger}), t.ns);
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
  }
  for (const Tenant& t : tenants) {
    json set =
        js_on(t.trigger, {{"op", "kv.set"}, {"key", "owner"}, {"value", t.ns + "/" + t.name}});
    ASSERT_EQ(set["success"], true) << set.dump();
    json put = js_on(t.trigger, {{"op", "obj.put"}, {"name", "owner"}, {"value", t.ns}});
    ASSERT_EQ(put["name"], "owner") << put.dump();
  }
  for (const Tenant& t : tenants) {
    EXPECT_EQ(js_on(t.trigger, {{"op", "kv.get"}, {"key", "owner"}})["value"], t.ns + "/" + t.name);
    EXPECT_EQ(js_on(t.trigger, {{"op", "obj.get"}, {"name", "owner"}})["value"], t.ns);
  }
}

TEST_F(HostServicesTest, ObjectStoreFromJavaScript) {
  json info = js({{"op", "obj.put"}, {"name", "hello"}, {"value", "object body"}});
  EXPECT_EQ(info["name"], "hello") << info.dump();
  EXPECT_EQ(info["size"], 11);
  EXPECT_EQ(info["bucket"], "hs_default_hsjs_obj");
  EXPECT_EQ(js({{"op", "obj.get"}, {"name", "hello"}})["value"], "object body");
  EXPECT_TRUE(js({{"op", "obj.get"}, {"name", "hello2"}})["value"].is_null()) << "missing (404)";
  EXPECT_EQ(js({{"op", "obj.list"}}), json::array({"hello"}));
  EXPECT_EQ(js({{"op", "obj.delete"}, {"name", "hello"}})["deleted"], "hello");
  EXPECT_EQ(js({{"op", "obj.list"}}), json::array());
  json missing = js({{"op", "obj.delete"}, {"name", "hello"}});
  EXPECT_NE(missing.value("error", "").find("no such object"), std::string::npos) << missing.dump();

  json big = js({{"op", "obj.big"}, {"name", "big"}, {"size", 5 << 20}});
  EXPECT_EQ(big["size"], 5 << 20) << big.dump();
  EXPECT_EQ(big["back"], 5 << 20);
  EXPECT_EQ(big["same"], true);
}

TEST_F(HostServicesTest, ObjectStoreFromWebAssembly) {
  need_wasm();
  EXPECT_EQ(wasm("object_get", "doc").substr(0, 5), "-404\n");
  std::string put = wasm("object_put", "doc", "wasm object");
  EXPECT_NE(put.find("\"bucket\":\"hs_default_hswasm_obj\""), std::string::npos) << put;
  EXPECT_EQ(wasm("object_get", "doc"), "11\nwasm object");
  EXPECT_NE(wasm("object_list").find("\"name\":\"doc\""), std::string::npos);
  EXPECT_EQ(wasm("object_delete", "doc").substr(0, 2), "16");
  EXPECT_EQ(wasm("object_list"), "2\n[]");
  EXPECT_EQ(wasm("object_big", std::to_string(5 << 20)),
            "1\n" + std::to_string(5 << 20) + "\nsame");
}

TEST_F(HostServicesTest, MessagingFromJavaScript) {
  Collector published(*conn_, "greetings.>");
  EXPECT_EQ(js({{"op", "pub"}, {"subject", "greetings.js"}, {"value", "hi all"}})["published"],
            "greetings.js");
  EXPECT_TRUE(published.wait_for("hi all"));

  auto responder = *conn_->subscribe("svc.upper", [this](nats::Message m) {
    std::string up(m.data());
    for (auto& c : up) c = static_cast<char>(std::toupper(c));
    (void)conn_->publish(m.reply(), up);
  });
  ASSERT_OK(conn_->flush());
  EXPECT_EQ(js({{"op", "req"}, {"subject", "svc.upper"}, {"value", "shout"}})["reply"], "SHOUT");

  json none = js({{"op", "req"}, {"subject", "nobody.home"}, {"value", "?"}});
  EXPECT_NE(none.value("error", "").find("no responders on 'nobody.home'"), std::string::npos)
      << none.dump();

  std::vector<nats::Subscription> many;
  for (int i = 0; i < 3; ++i) {
    many.push_back(*conn_->subscribe("census", [this, i](nats::Message m) {
      (void)conn_->publish(m.reply(), "responder " + std::to_string(i));
    }));
  }
  ASSERT_OK(conn_->flush());
  EXPECT_EQ(js({{"op", "reqmany"}, {"subject", "census"}, {"value", "who?"}}),
            json::array({"responder 0", "responder 1", "responder 2"}));
}

TEST_F(HostServicesTest, MessagingFromWebAssembly) {
  need_wasm();
  Collector published(*conn_, "greetings.>");
  EXPECT_EQ(wasm("publish", "greetings.wasm", "hello from wasm").substr(0, 2), "16");
  EXPECT_TRUE(published.wait_for("hello from wasm"));
  auto responder = *conn_->subscribe("svc.echo", [this](nats::Message m) {
    (void)conn_->publish(m.reply(), "echo: " + std::string(m.data()));
  });
  std::vector<nats::Subscription> many;
  for (int i = 0; i < 3; ++i) {
    many.push_back(*conn_->subscribe("census", [this, i](nats::Message m) {
      (void)conn_->publish(m.reply(), "r" + std::to_string(i));
    }));
  }
  ASSERT_OK(conn_->flush());
  EXPECT_EQ(wasm("request", "svc.echo", "ping"), "10\necho: ping");
  std::string none = wasm("request", "nobody.home", "?");
  EXPECT_EQ(none.substr(0, 5), "-503\n") << none;
  EXPECT_NE(none.find("no responders"), std::string::npos) << none;
  std::string gathered = wasm("request_many", "census", "who?");
  EXPECT_EQ(gathered.substr(0, 3), "18\n") << gathered;  // three frames of 4 + 2 bytes
  for (const char* r : {"r0\n", "r1\n", "r2\n"}) EXPECT_NE(gathered.find(r), std::string::npos);
}

TEST_F(HostServicesTest, HttpFromJavaScript) {
  testing::HttpServer web(http_handler);
  json got = js({{"op", "http"}, {"method", "get"}, {"url", web.url("/hello")}});
  EXPECT_EQ(got["status"], 200) << got.dump();
  EXPECT_EQ(got["response"], "hello from http");
  EXPECT_EQ(got["headers"]["X-Greeting"], "hi");

  json posted = js({{"op", "http"},
                    {"method", "post"},
                    {"url", web.url("/echo")},
                    {"body", "the body"},
                    {"headers", {{"X-Custom", "custom value"}}}});
  EXPECT_EQ(posted["status"], 201) << posted.dump();
  json seen = json::parse(posted["response"].get<std::string>());
  EXPECT_EQ(seen["method"], "POST");
  EXPECT_EQ(seen["custom"], "custom value");
  EXPECT_EQ(seen["body"], "the body");

  for (const char* method : {"put", "patch"}) {
    json r = js({{"op", "http"}, {"method", method}, {"url", web.url("/echo")}, {"body", "b"}});
    std::string upper = method;
    for (auto& c : upper) c = static_cast<char>(std::toupper(c));
    EXPECT_EQ(json::parse(r["response"].get<std::string>())["method"], upper);
  }
  EXPECT_EQ(
      json::parse(js({{"op", "http"}, {"method", "del"}, {"url", web.url("/echo")}})["response"]
                      .get<std::string>())["method"],
      "DELETE");
  EXPECT_EQ(js({{"op", "http"}, {"method", "head"}, {"url", web.url("/hello")}})["status"], 200);
  EXPECT_EQ(js({{"op", "http"}, {"method", "get"}, {"url", web.url("/moved")}})["response"],
            "hello from http")
      << "a redirect is followed";
  EXPECT_EQ(js({{"op", "http"}, {"method", "get"}, {"url", web.url("/nothing")}})["status"], 404);
  json slow = js({{"op", "http"}, {"method", "get"}, {"url", web.url("/slow")}});
  EXPECT_NE(slow.value("error", "").find("within 800 ms"), std::string::npos) << slow.dump();
}

TEST_F(HostServicesTest, HttpFromWebAssembly) {
  need_wasm();
  testing::HttpServer web(http_handler);
  EXPECT_EQ(wasm("http", "get", web.url("/hello") + "\n\n"), "200\n15\nhello from http");
  std::string posted =
      wasm("http", "post", web.url("/echo") + "\n{\"X-Custom\":\"from wasm\"}\nwasm body");
  ASSERT_EQ(posted.substr(0, 4), "201\n") << posted;
  json seen = json::parse(posted.substr(posted.find('{')));
  EXPECT_EQ(seen["custom"], "from wasm");
  EXPECT_EQ(seen["body"], "wasm body");
  EXPECT_EQ(wasm("http", "get", web.url("/nothing") + "\n\n"), "404\n12\nno such page");
  std::string slow = wasm("http", "get", web.url("/slow") + "\n\n");
  EXPECT_EQ(slow.substr(0, 7), "0\n-504\n") << slow;
}

TEST_F(HostServicesTest, RefusedAttemptsAreClearErrorsAndLogged) {
  Collector logs(*conn_, "$NEX.logs.default.*.hsjs.*");
  json sys = js({{"op", "pub"}, {"subject", "$SYS.REQ.SERVER.PING"}, {"value", ""}});
  EXPECT_NE(sys.value("error", "").find("subject '$SYS.REQ.SERVER.PING' is reserved"),
            std::string::npos)
      << sys.dump();
  json secret = js({{"op", "req"}, {"subject", "secret.plans"}, {"value", ""}});
  EXPECT_NE(secret.value("error", "").find("matches 'secret.>'"), std::string::npos)
      << secret.dump();
  const std::string internal =
      "http://127.0.0.1:" + std::to_string(node_->internal_nats_port()) + "/";
  json sneaky = js({{"op", "http"}, {"method", "get"}, {"url", internal}});
  EXPECT_NE(sneaky.value("error", "").find("internal NATS port"), std::string::npos)
      << sneaky.dump();
  json zero = js({{"op", "http"},
                  {"method", "get"},
                  {"url", "http://0.0.0.0:" + std::to_string(node_->internal_nats_port())}});
  EXPECT_NE(zero.value("error", "").find("internal NATS port"), std::string::npos) << zero.dump();

  testing::HttpServer web(http_handler);
  json elsewhere = js({{"op", "http"},
                       {"method", "get"},
                       {"url", "http://localhost:" + std::to_string(web.port()) + "/hello"}});
  EXPECT_NE(
      elsewhere.value("error", "").find("host 'localhost' is not in the node's allowed HTTP hosts"),
      std::string::npos)
      << elsewhere.dump();

  for (const char* needle :
       {"$SYS.REQ.SERVER.PING", "secret.plans", "internal NATS port", "host 'localhost'"}) {
    auto line = logs.wait_for(needle);
    ASSERT_TRUE(line) << "the refusal of " << needle << " was not logged";
    EXPECT_EQ(json::parse(line->second)["level"], "warn");
  }
  // The function and the node carry on.
  EXPECT_EQ(js({{"op", "kv.set"}, {"key", "still"}, {"value", "here"}})["success"], true);
}

// A native service reaches host services too (examples/hostservices-native/hostcall.c), as a
// user of the internal NATS that may call them only for itself: another workload's bucket is
// refused by the node (and logged), another workload's subjects by the NATS server.
TEST_F(HostServicesTest, NativeServicesCallThemForThemselvesOnly) {
  ASSERT_EQ(js({{"op", "kv.set"}, {"key", "secret"}, {"value", "the js function's"}})["success"],
            true);
  ASSERT_OK(files_->put_file("hostcall", testing::kBinDir / "hostcall"));
  std::string victim_id;
  json machines = info()["data"]["machines"];
  for (const auto& m : machines)
    if (m["workload"]["name"] == "hsjs") victim_id = m["id"];
  ASSERT_FALSE(victim_id.empty());
  Collector logs(*conn_, "$NEX.logs.default.*.hostcall.*");
  json req = deploy_request("hostcall");
  req["location"] = "nats://NEXCLIFILES/hostcall";
  req["argv"] = {"kv",     "set",
                 "note",   "written natively",
                 "kv",     "get",
                 "note",   "hostint.{id}.rpc.default.hsjs.kv.get",
                 "secret", "hostint." + victim_id + ".rpc.default.hsjs.kv.get",
                 "secret"};
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();

  EXPECT_TRUE(logs.wait_for("kv.set -> 200 OK"));
  EXPECT_TRUE(logs.wait_for("written natively")) << "its own key reads back";
  EXPECT_TRUE(
      logs.wait_for("-> 403 workload hostcall in namespace default may not use the host "
                    "services of hsjs"));
  EXPECT_TRUE(logs.wait_for("refused by the NATS server"));
  auto refusal = logs.wait_for("host services refused");
  ASSERT_TRUE(refusal) << "the node did not log the attempt";
  EXPECT_EQ(json::parse(refusal->second)["level"], "warn");
  EXPECT_TRUE(logs.wait_for("2 call(s) failed"));
  // Its last line has come, and what it printed before came in order before it.
  EXPECT_FALSE(logs.wait_for("the js function's", 0ms)) << "another workload's value leaked";
  auto kv = nats::KeyValue::bind(*js_, "hs_default_hostcall_kv");
  ASSERT_TRUE(kv);
  EXPECT_EQ(kv->get("note")->value, "written natively");
}

// The HTTP service's network policy; each test starts its node with the policy it is about.
// A workload's buckets get the caps the node config gives: bytes, one value's size, age. A value
// over the size cap is refused, and a bucket an earlier node made with other caps gets these.
TEST_F(HostServicesNodeTest, AWorkloadsBucketHasTheConfiguredCapsAndRefusesLargerValues) {
  // As an earlier node (or anyone) could have left it: no caps at all.
  ASSERT_TRUE(nats::KeyValue::create(*js_, {.bucket = "hs_default_hsjs_kv"}));
  NodeConfig config;
  config.host_services_settings.kv.caps = {
      .max_bytes = 1 << 20, .max_message_bytes = 4096, .retention_days = 3};
  start_with(config, /*with_wasm=*/false);
  json small = js({{"op", "kv.set"}, {"key", "small"}, {"value", std::string(100, 'a')}});
  EXPECT_EQ(small["success"], true) << small.dump();
  json large = js({{"op", "kv.set"}, {"key", "large"}, {"value", std::string(5000, 'a')}});
  EXPECT_FALSE(large.value("error", "").empty())
      << "a value over the cap was taken: " << large.dump();
  EXPECT_TRUE(js({{"op", "kv.get"}, {"key", "large"}})["value"].is_null());
  auto stream = js_->stream_info("KV_hs_default_hsjs_kv");
  ASSERT_TRUE(stream) << stream.error().message;
  EXPECT_EQ(stream->config.max_bytes, 1 << 20);
  EXPECT_EQ(stream->config.max_msg_size, 4096);
  EXPECT_EQ(stream->config.max_age, std::chrono::hours(72));
}

class HttpPolicyTest : public HostServicesNodeTest {
 protected:
  // Starts the node with these allow_networks entries (and `more` of the HTTP settings).
  void start_with_networks(const std::vector<std::string>& entries,
                           const std::function<void(host_services::HttpSettings&)>& more = {}) {
    NodeConfig config;
    config.host_services_settings.http.timeout_ms = 2000;
    config.host_services_settings.http.allow_networks = allow(entries);
    if (more) more(config.host_services_settings.http);
    start_with(config, /*with_wasm=*/false);
  }
  // What a function's GET of `url` gives: {status, response, ...} or {error}.
  json get(const std::string& url) { return js({{"op", "http"}, {"method", "get"}, {"url", url}}); }
  // Expects a GET of `url` to be refused as policy, with `because` in the message; the refusal
  // names `refused_url` (the hop refused, when redirects lead there), or else `url`.
  void expect_refused(const std::string& url, const std::string& because,
                      const std::string& refused_url = {}) {
    const std::string& hop = refused_url.empty() ? url : refused_url;
    const std::string error = get(url).value("error", "");
    EXPECT_NE(error.find("'" + hop + "' resolves to "), std::string::npos) << url << ": " << error;
    EXPECT_NE(error.find(because), std::string::npos) << url << ": " << error;
  }
};

constexpr const char* kLoopbackRefused =
    "a loopback address, which host services do not reach "
    "(host_services.services.http.config.allow_networks opens it)";

TEST_F(HttpPolicyTest, LoopbackIsRefusedByDefaultWhateverItIsCalled) {
  start_with_networks({});
  ASSERT_FALSE(HasFatalFailure());
  testing::HttpServer web(http_handler);
  Collector logs(*conn_, "$NEX.logs.default.*.hsjs.*");
  const std::string port = std::to_string(web.port());
  for (const std::string host : {"127.0.0.1", "localhost", "127.1", "0x7f000001", "2130706433",
                                 "0177.0.0.1", "[::ffff:127.0.0.1]", "[::1]"})
    expect_refused("http://" + host + ":" + port + "/hello", kLoopbackRefused);
  EXPECT_NE(get(web.url("/hello"))
                .value("error", "")
                .find("resolves to 127.0.0.1, " + std::string(kLoopbackRefused)),
            std::string::npos);
  EXPECT_EQ(web.connections_before_now(), 0) << "a refused request connected anyway";
  auto line = logs.wait_for("a loopback address");
  ASSERT_TRUE(line) << "the refusal was not logged as the workload's attempt";
  EXPECT_EQ(json::parse(line->second)["level"], "warn");
}

TEST_F(HttpPolicyTest, TheAllowListOpensANetwork) {
  start_with_networks({"127.0.0.1/32"});
  ASSERT_FALSE(HasFatalFailure());
  testing::HttpServer web(http_handler);
  json got = get(web.url("/hello"));
  EXPECT_EQ(got["status"], 200) << got.dump();
  EXPECT_EQ(got["response"], "hello from http");
  const std::string port = std::to_string(web.port());
  expect_refused("http://127.0.0.2:" + port + "/hello",
                 "127.0.0.2, " + std::string(kLoopbackRefused));
  expect_refused("http://[::1]:" + port + "/hello", kLoopbackRefused);
}

TEST_F(HttpPolicyTest, ANameInTheAllowListOpensWhatItResolvesToForThatNameOnly) {
  start_with_networks({"localhost"});
  ASSERT_FALSE(HasFatalFailure());
  testing::HttpServer web(http_handler);
  const std::string port = std::to_string(web.port());
  json got = get("http://localhost:" + port + "/hello");
  EXPECT_EQ(got["status"], 200) << got.dump();
  expect_refused(web.url("/hello"), kLoopbackRefused);
}

TEST_F(HttpPolicyTest, TheNodesOwnPortsAreRefusedWhateverTheAllowList) {
  metrics_listen_ = "0.0.0.0:0";  // every address of this host
  start_with_networks({"127.0.0.0/8"});
  ASSERT_FALSE(HasFatalFailure());
  std::smatch m;
  const std::string metrics_url = node_->metrics_url();
  ASSERT_TRUE(std::regex_search(metrics_url, m, std::regex(":([0-9]+)/metrics$"))) << metrics_url;
  const std::string metrics = m[1];
  const std::string internal = std::to_string(node_->internal_nats_port());
  for (const std::string host :
       {"127.0.0.1", "127.0.0.2", "localhost", "0.0.0.0", "[::ffff:127.0.0.1]", "[::1]"}) {
    expect_refused(
        "http://" + host + ":" + metrics + "/metrics",
        "port " + metrics + ", the node's metrics port, which host services never reach");
    expect_refused("http://" + host + ":" + internal + "/",
                   "port " + internal + ", the node's internal NATS port");
  }
  testing::HttpServer web(http_handler);
  EXPECT_EQ(get(web.url("/hello"))["status"], 200) << "127.0.0.0/8 is open for other ports";
}

TEST_F(HttpPolicyTest, ARedirectToARefusedAddressIsRefused) {
  start_with_networks({"127.0.0.1/32"});
  ASSERT_FALSE(HasFatalFailure());
  testing::HttpServer secret(http_handler, "127.0.0.2");
  testing::HttpServer web([&](const testing::HttpRequest& req) -> testing::HttpResponse {
    if (req.path == "/go") return {302, {{"Location", secret.url("/hello")}}, ""};
    return http_handler(req);
  });
  expect_refused(web.url("/go"), "127.0.0.2, " + std::string(kLoopbackRefused),
                 secret.url("/hello"));
  EXPECT_EQ(secret.connections_before_now(), 0) << "the redirect was followed";
}

TEST_F(HttpPolicyTest, RedirectsStopAtTheLimit) {
  start_with_networks({"127.0.0.1/32"},
                      [](host_services::HttpSettings& h) { h.max_redirects = 2; });
  ASSERT_FALSE(HasFatalFailure());
  std::atomic<int> asked = 0;
  testing::HttpServer web([&](const testing::HttpRequest& req) -> testing::HttpResponse {
    ++asked;
    const int hop = std::stoi(req.path.substr(req.path.rfind('/') + 1));
    return {302, {{"Location", "/hop/" + std::to_string(hop + 1)}}, ""};
  });
  json r = get(web.url("/hop/0"));
  EXPECT_NE(r.value("error", "").find("too many redirects (the limit is 2)"), std::string::npos)
      << r.dump();
  EXPECT_EQ(asked, 3) << "the first request and two redirects";
}

TEST_F(HttpPolicyTest, AResponseLargerThanTheLimitIsRefused) {
  start_with_networks({"127.0.0.1/32"},
                      [](host_services::HttpSettings& h) { h.max_response_bytes = 1000; });
  ASSERT_FALSE(HasFatalFailure());
  testing::HttpServer web([](const testing::HttpRequest& req) -> testing::HttpResponse {
    return {200, {}, std::string(req.path == "/big" ? 1001 : 1000, 'x')};
  });
  json fits = get(web.url("/fits"));
  EXPECT_EQ(fits["status"], 200) << fits.dump();
  EXPECT_EQ(fits["response"].get<std::string>().size(), 1000u);
  json big = get(web.url("/big"));
  EXPECT_NE(big.value("error", "").find("the response is larger than 1000 bytes"),
            std::string::npos)
      << big.dump();
}

TEST_F(HttpPolicyTest, ProxiesFromTheEnvironmentAreNotUsed) {
  start_with_networks({"127.0.0.1/32"});
  ASSERT_FALSE(HasFatalFailure());
  testing::HttpServer web(http_handler);
  testing::HttpServer proxy([](const testing::HttpRequest&) -> testing::HttpResponse {
    return {200, {}, "from the proxy"};
  });
  // The node runs in this process, so its libcurl sees this environment.
  ::setenv("http_proxy", proxy.url("").c_str(), 1);
  ::setenv("ALL_PROXY", proxy.url("").c_str(), 1);
  json got = get(web.url("/hello"));
  ::unsetenv("http_proxy");
  ::unsetenv("ALL_PROXY");
  EXPECT_EQ(got["response"], "hello from http") << got.dump();
  EXPECT_EQ(proxy.connections_before_now(), 0) << "the request went through the proxy";
}

// The same policy in a network namespace of the test's own, where 169.254.169.254 (a cloud's
// metadata service) and 10.213.0.1 (an address like a sandbox's gateway) are this host's: the
// test can watch whether anything connects to them, and nothing it does reaches a real
// metadata service. The suite's nats-server, the node and its agents all run in the namespace.
class HttpPolicyInOwnNetworkTest : public HttpPolicyTest {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      skip_ = "needs root to make a network namespace";
      return;
    }
    // The resolver's address too, where the test's own DNS server answers.
    std::vector<std::string> addresses = {"169.254.169.254", "10.213.0.1"};
    resolver_ = testing::DnsServer::resolver_address();
    if (!resolver_.empty() && !resolver_.starts_with("127.")) addresses.push_back(resolver_);
    auto ns = testing::OwnNetworkNamespace::enter(addresses);
    if (!ns) {
      skip_ = ns.error().message;
      return;
    }
    namespace_ = std::move(*ns);
    HttpPolicyTest::SetUpTestSuite();
  }
  static void TearDownTestSuite() {
    if (!namespace_) return;
    HttpPolicyTest::TearDownTestSuite();
    namespace_.reset();
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    HttpPolicyTest::SetUp();
  }

  static inline std::string skip_;
  static inline std::string resolver_;  // the IPv4 nameserver of /etc/resolv.conf, if any
  static inline std::unique_ptr<testing::OwnNetworkNamespace> namespace_;
};

TEST_F(HttpPolicyInOwnNetworkTest, TheMetadataAddressIsRefusedBeforeConnecting) {
  start_with_networks({});
  ASSERT_FALSE(HasFatalFailure());
  testing::HttpServer metadata(http_handler, "169.254.169.254");
  expect_refused(metadata.url("/hello"),
                 "169.254.169.254, a link-local address, which host services do not reach");
  EXPECT_EQ(metadata.connections_before_now(), 0) << "the node connected to the metadata address";
}

TEST_F(HttpPolicyInOwnNetworkTest, TheAllowListOpensTheMetadataAddress) {
  start_with_networks({"169.254.169.254/32"});
  ASSERT_FALSE(HasFatalFailure());
  testing::HttpServer metadata(http_handler, "169.254.169.254");
  json got = get(metadata.url("/hello"));
  EXPECT_EQ(got["response"], "hello from http") << got.dump();
  EXPECT_EQ(metadata.connections_before_now(), 1);
}

TEST_F(HttpPolicyInOwnNetworkTest, TheNodesOwnPortsAreRefusedThroughAGatewayAddress) {
  metrics_listen_ = "0.0.0.0:0";
  start_with_networks({"10.0.0.0/8"});
  ASSERT_FALSE(HasFatalFailure());
  testing::HttpServer web(http_handler, "10.213.0.1");
  EXPECT_EQ(get(web.url("/hello"))["status"], 200) << "10.0.0.0/8 is open for other ports";
  expect_refused("http://10.213.0.1:" + std::to_string(node_->internal_nats_port()) + "/",
                 "the node's internal NATS port, which host services never reach");
  std::smatch m;
  const std::string metrics_url = node_->metrics_url();
  ASSERT_TRUE(std::regex_search(metrics_url, m, std::regex(":([0-9]+)/metrics$"))) << metrics_url;
  expect_refused("http://10.213.0.1:" + std::string(m[1]) + "/metrics",
                 "the node's metrics port, which host services never reach");
}

// allow_hosts "*.example.org" through the HTTP service: its subdomains are reached, the domain
// itself and look-alikes are not. The names resolve to this namespace's loopback through the
// test's own DNS server, and allow_networks opens loopback.
TEST_F(HttpPolicyInOwnNetworkTest, AWildcardHostAllowsItsSubdomainsOnly) {
  if (resolver_.empty()) GTEST_SKIP() << "/etc/resolv.conf names no IPv4 nameserver";
  std::map<std::string, std::string> names;
  for (const char* name : {"api.example.org", "a.b.example.org", "example.org", "evilexample.org",
                           "example.org.evil.test"})
    names[name] = "127.0.0.1";
  auto dns = testing::DnsServer::start(resolver_, names);
  ASSERT_TRUE(dns) << dns.error().message;
  start_with_networks({"127.0.0.1/32"},
                      [](host_services::HttpSettings& h) { h.allow_hosts = {"*.example.org"}; });
  ASSERT_FALSE(HasFatalFailure());
  testing::HttpServer web(http_handler);
  const std::string port = std::to_string(web.port());
  for (const std::string host : {"api.example.org", "a.b.example.org", "API.Example.ORG"}) {
    json got = get("http://" + host + ":" + port + "/hello");
    EXPECT_EQ(got["response"], "hello from http") << host << ": " << got.dump();
  }
  for (const std::string host : {"example.org", "evilexample.org", "example.org.evil.test"}) {
    const std::string error = get("http://" + host + ":" + port + "/hello").value("error", "");
    EXPECT_NE(error.find("host '" + host + "' is not in the node's allowed HTTP hosts"),
              std::string::npos)
        << host << ": " << error;
  }
  EXPECT_EQ(web.connections_before_now(), 3) << "only the subdomains were asked";
}

}  // namespace
}  // namespace nex::node
