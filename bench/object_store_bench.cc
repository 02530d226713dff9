// Object store throughput against raw JetStream, on a real local nats-server.
//
//   build/bench/object_store_bench [--size-mib N] [--runs N]
//
// Moves one object of N MiB (default 64) through the ADR-20 object store (put: chunked,
// pipelined, SHA-256; get: ordered consumer, digest verified) and the same bytes as raw
// JetStream publishes of 128 KiB (pipelined the same way) and raw ordered-consumer reads,
// and prints MiB/s (median and best of the runs). It also reports how much the process's peak
// memory grew while streaming the object in and out, to show puts and gets are not buffered.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "nats/local_server.h"
#include "nats/object_store.h"

using namespace nex;
using namespace nex::nats;
using Clock = std::chrono::steady_clock;

namespace {

long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

// Deterministic bytes produced on the fly, so a put need not hold the object.
struct Generator {
  size_t remaining;
  uint64_t state = 0x9E3779B97F4A7C15ull;
  Result<size_t> operator()(std::span<char> buf) {
    const size_t n = std::min(buf.size(), remaining);
    for (size_t i = 0; i < n; ++i) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      buf[i] = static_cast<char>(state);
    }
    remaining -= n;
    return n;
  }
};

double mib_per_s(size_t bytes, Clock::duration d) {
  return (static_cast<double>(bytes) / (1024.0 * 1024.0)) /
         std::chrono::duration<double>(d).count();
}

template <typename F>
std::vector<double> measure(int runs, size_t bytes, F&& body) {
  std::vector<double> out;
  for (int r = 0; r < runs; ++r) {
    const auto start = Clock::now();
    if (!body(r)) return {};
    out.push_back(mib_per_s(bytes, Clock::now() - start));
  }
  std::sort(out.begin(), out.end());
  return out;
}

void row(const char* what, const std::vector<double>& v) {
  if (v.empty()) {
    std::printf("| %-46s | %10s | %10s |\n", what, "failed", "");
    return;
  }
  std::printf("| %-46s | %10.1f | %10.1f |\n", what, v[v.size() / 2], v.back());
}

}  // namespace

int main(int argc, char** argv) {
  size_t size_mib = 64;
  int runs = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--size-mib") == 0) size_mib = std::stoul(argv[i + 1]);
    if (std::strcmp(argv[i], "--runs") == 0) runs = std::stoi(argv[i + 1]);
  }
  const size_t size = size_mib << 20;

  auto server = LocalNatsServer::start({});
  if (!server) {
    std::fprintf(stderr, "cannot start nats-server: %s\n", server.error().message.c_str());
    return 1;
  }
  auto conn = Connection::connect({.urls = {server->url()}, .name = "object_store_bench"});
  auto js = conn ? JetStream::create(*conn, {.timeout = std::chrono::seconds(30),
                                             .max_pending_async = ObjectStore::kMaxChunksInFlight})
                 : Result<JetStream>(std::unexpected(conn.error()));
  if (!js) {
    std::fprintf(stderr, "cannot connect: %s\n", js.error().message.c_str());
    return 1;
  }
  auto os = ObjectStore::create(*js, {.bucket = "bench"});
  if (!os || !js->add_stream({.name = "RAW", .subjects = {"raw.>"}})) {
    std::fprintf(stderr, "cannot create the bench bucket and stream\n");
    return 1;
  }

  // Streaming phase first, before any buffer of the object's size exists in this process.
  const long rss_before = peak_rss_kib();
  auto put = measure(runs, size, [&](int) {
    auto r = os->put(ObjectMeta{"object", {}, {}}, Generator{size});
    if (!r) std::fprintf(stderr, "put: %s\n", r.error().message.c_str());
    return r.has_value();
  });
  auto get = measure(runs, size, [&](int) {
    size_t got = 0;
    auto r = os->get("object", [&](std::string_view c) -> Status {
      got += c.size();
      return {};
    });
    if (!r) std::fprintf(stderr, "get: %s\n", r.error().message.c_str());
    return r.has_value() && got == size;
  });
  const long rss_growth = peak_rss_kib() - rss_before;

  // Raw JetStream: the same bytes in 128 KiB messages, one subject per run.
  std::string chunk(ObjectStore::kChunkSize, '\0');
  auto publish = measure(runs, size, [&](int r) {
    Generator gen{size};
    const std::string subject = "raw." + std::to_string(r);
    for (;;) {
      auto n = gen(std::span<char>(chunk.data(), chunk.size()));
      if (*n == 0) break;
      auto msg = Message::create(subject, std::string_view(chunk.data(), *n));
      if (!msg || !js->publish_async(std::move(*msg))) return false;
    }
    return js->publish_async_complete(std::chrono::seconds(60)).has_value();
  });
  auto read = measure(runs, size, [&](int r) {
    auto sub = js->ordered_consumer("RAW", "raw." + std::to_string(r));
    if (!sub) return false;
    size_t got = 0;
    while (got < size) {
      auto m = sub->next(std::chrono::seconds(30));
      if (!m) return false;
      got += m->data().size();
    }
    return true;
  });

  std::printf(
      "\nObject store vs raw JetStream: one %zu MiB object, 128 KiB chunks, %lld in flight,\n"
      "file storage, nats-server on loopback, %d runs\n\n",
      size_mib, static_cast<long long>(ObjectStore::kMaxChunksInFlight), runs);
  std::printf("| %-46s | %10s | %10s |\n", "operation", "median", "best");
  std::printf("|%s|%s|%s|\n", std::string(48, '-').c_str(), std::string(12, '-').c_str(),
              std::string(12, '-').c_str());
  row("object store put (MiB/s)", put);
  row("raw JetStream publish, same bytes (MiB/s)", publish);
  row("object store get, digest verified (MiB/s)", get);
  row("raw JetStream ordered read, same bytes (MiB/s)", read);
  std::printf(
      "\nPeak RSS growth while putting and getting the object: %.1f MiB (object: %zu MiB)\n",
      rss_growth / 1024.0, size_mib);
  return 0;
}
