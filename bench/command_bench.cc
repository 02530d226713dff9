// Durable commands: how long a `hello` takes end to end while the node is online, beside a plain
// NATS request to a responder on the same server, and how many commands per second nodes work
// through when 1,000 are sent over 10 of them. The nodes are the real command service of a node
// (src/commands) on a real nats-server with JetStream; the sender signs and files as `nex cmd`.
//
//   build/bin/command_bench [--round-trips N] [--commands N] [--nodes N]
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "bench_support.h"
#include "commands/command_service.h"
#include "commands/sender.h"
#include "commands/store.h"
#include "core/nuid.h"
#include "nats/connection.h"

using namespace nex;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Args {
  int round_trips = 500;
  int commands = 1000;
  int nodes = 10;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--round-trips")) a.round_trips = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--commands")) a.commands = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--nodes")) a.nodes = std::atoi(argv[i + 1]);
  }
  return a;
}

template <typename T>
T check(Result<T> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", what, r.error().message.c_str());
    std::exit(1);
  }
  return std::move(*r);
}

std::unique_ptr<commands::CommandService> start_node(const std::string& url,
                                                     const std::string& name, const fs::path& dir) {
  auto conn = check(nats::Connection::connect({.urls = {url}, .send_asap = true}), "connect");
  commands::CommandServiceOptions o{.connection = conn};
  o.node_name = name;
  o.node_key = *crypto::KeyPair::create(crypto::KeyType::kServer);
  o.state_dir = dir / name;
  return check(commands::CommandService::start(std::move(o)), "command service");
}

void row(const char* what, const std::vector<double>& v) {
  std::printf("| %-44s | %8.3f | %8.3f | %8.3f |\n", what, bench::percentile(v, 0.5),
              bench::percentile(v, 0.99), bench::percentile(v, 1.0));
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  auto server = check(nats::LocalNatsServer::start({}), "nats-server");
  const fs::path dir =
      fs::temp_directory_path() / ("nex-command-bench-" + std::to_string(getpid()));
  auto conn =
      check(nats::Connection::connect({.urls = {server.url()}, .send_asap = true}), "connect");
  auto js = check(nats::JetStream::create(conn), "jetstream");
  if (auto st = commands::ensure_streams(js); !st) {
    std::fprintf(stderr, "streams: %s\n", st.error().message.c_str());
    return 1;
  }
  const auto issuer = *crypto::KeyPair::create(crypto::KeyType::kAccount);

  // Round trips, one at a time.
  std::vector<double> plain, hello;
  {
    auto responder = check(
        conn.subscribe("bench.hello",
                       [&](nats::Message m) { (void)conn.publish(m.reply(), "hello from bench"); }),
        "subscribe");
    (void)conn.flush();
    for (int i = 0; i < args.round_trips; ++i) {
      const auto t = std::chrono::steady_clock::now();
      auto r = conn.request("bench.hello", "hello", 2s);
      if (r) plain.push_back(bench::ms(std::chrono::steady_clock::now() - t));
    }
    auto node = start_node(server.url(), "rt", dir);
    commands::Command c;
    c.to_node = "rt";
    c.method = commands::method::kHello;
    for (int i = 0; i < args.round_trips; ++i) {
      const auto t = std::chrono::steady_clock::now();
      c.id = next_nuid();
      auto watch = check(commands::ResultWatch::start(js, c.id), "watch");
      check(commands::send_command(js, c, issuer, 5s), "send");
      auto got = watch.wait({"rt"}, std::chrono::steady_clock::now() + 10s);
      if (!got.empty() && got[0].status == commands::status::kDone)
        hello.push_back(bench::ms(std::chrono::steady_clock::now() - t));
    }
  }
  std::printf("\nRound trip, one at a time (ms), %d each\n\n", args.round_trips);
  std::printf("| %-44s | %8s | %8s | %8s |\n", "what", "p50", "p99", "max");
  std::printf("|%s|----------|----------|----------|\n", std::string(46, '-').c_str());
  row("plain NATS request (responder replies)", plain);
  row("durable `hello`: sign, file, run, result", hello);
  std::printf("(%zu of %d hello round trips completed)\n", hello.size(), args.round_trips);

  // Throughput: commands spread over the nodes, all filed at once, counted as results arrive.
  std::vector<std::unique_ptr<commands::CommandService>> nodes;
  for (int i = 0; i < args.nodes; ++i)
    nodes.push_back(start_node(server.url(), "tp" + std::to_string(i), dir));
  std::this_thread::sleep_for(500ms);  // consumers made
  std::mutex mu;
  std::condition_variable cv;
  int finals = 0;
  auto counter =
      check(conn.subscribe("$NEX.cmdresult.>",
                           [&](nats::Message m) {
                             if (m.data().find("\"status\":\"done\"") == std::string_view::npos)
                               return;
                             std::lock_guard l(mu);
                             ++finals;
                             cv.notify_all();
                           }),
            "subscribe results");
  (void)conn.flush();
  const auto start = std::chrono::steady_clock::now();
  // Filed pipelined: many publishes in flight, their acknowledgements awaited together.
  for (int i = 0; i < args.commands; ++i) {
    commands::Command c;
    c.to_node = "tp" + std::to_string(i % args.nodes);
    c.method = commands::method::kHello;
    auto msgs = check(commands::sign_for_nodes(c, issuer), "sign");
    if (auto st = js.publish_async(std::move(msgs[0].message)); !st) return 1;
  }
  if (auto st = js.publish_async_complete(30s); !st) {
    std::fprintf(stderr, "filing: %s\n", st.error().message.c_str());
    return 1;
  }
  const auto filed = std::chrono::steady_clock::now();
  {
    std::unique_lock l(mu);
    cv.wait_for(l, 120s, [&] { return finals >= args.commands; });
  }
  const auto end = std::chrono::steady_clock::now();
  std::printf("\nThroughput: %d hello commands over %d nodes\n\n", args.commands, args.nodes);
  std::printf("| %-30s | %10s |\n|--------------------------------|------------|\n", "what",
              "value");
  std::printf("| %-30s | %10d |\n", "results done", finals);
  std::printf("| %-30s | %10.1f |\n", "filing all (ms)", bench::ms(filed - start));
  std::printf("| %-30s | %10.1f |\n", "first filed to last done (ms)", bench::ms(end - start));
  std::printf("| %-30s | %10.0f |\n", "commands per second",
              finals / (bench::ms(end - start) / 1000));
  counter.unsubscribe_and_wait();
  nodes.clear();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
