#include "metrics/endpoint.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace nex::metrics {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The bounds docs/metrics.md states. A scrape is one small request sent at once, so a second
// from accept to its last byte is ample over any network a scraper uses; stalled clients each
// hold a worker for at most that long.
constexpr size_t kWorkers = 4;
constexpr auto kRequestTime = 1s;
constexpr size_t kMaxRequestBytes = 8192;
constexpr auto kAnswerTime = 2s;  // to write the answer, from its first byte
constexpr int kListenBacklog = 64;

auto bad_listen(const std::string& listen, const std::string& why) {
  return fail(ErrorCode::kInvalidArgument,
              "--metrics: expected HOST:PORT (for example 127.0.0.1:9100) or :PORT, got '" +
                  listen + "'" + (why.empty() ? "" : ": " + why));
}

// HOST:PORT or :PORT as an IPv4 socket address, and the host as written for url().
Result<std::pair<sockaddr_in, std::string>> parse_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return bad_listen(listen, "no port");
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  int port = -1;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 0 || port > 65535)
    return bad_listen(listen, "the port must be 0-65535");
  if (host == "localhost") host = "127.0.0.1";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (host.empty()) {
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    host = "0.0.0.0";
  } else if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return bad_listen(listen, "the host must be an IPv4 address");
  }
  return std::pair{addr, host};
}

// When the connection a worker is serving was accepted. cpp-httplib hands the task queue only a
// function to call, so WorkerPool sets this before it runs one, for Endpoint::Server on the same
// thread.
thread_local Clock::time_point t_accepted;

// cpp-httplib's task queue: kWorkers threads serve connections in the order they were accepted
// (the server enqueues each right after accepting it). Connections still queued at shutdown are
// served too, which closes them.
class WorkerPool : public httplib::TaskQueue {
 public:
  WorkerPool() {
    for (size_t i = 0; i < kWorkers; ++i) threads_.emplace_back([this] { work(); });
  }
  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back({std::move(fn), Clock::now()});
    }
    cv_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  struct Job {
    std::function<void()> serve;
    Clock::time_point accepted;
  };

  void work() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      t_accepted = job.accepted;
      job.serve();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Waits until `fd` has `events` (or an error or hang-up, which the next call reports), until
// `deadline`. Past the deadline it still looks once: a request that arrived while its
// connection waited for a worker is served.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

// "ip" and port of a socket's own (`local`) or peer's address, for cpp-httplib's request headers.
void address_of(int fd, bool local, std::string& ip, int& port) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  if ((local ? ::getsockname(fd, sa, &len) : ::getpeername(fd, sa, &len)) != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    port = ntohs(in->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    port = ntohs(in6->sin6_port);
  }
  ip = text;
}

// One connection's reads and writes, within the bounds: the request must have arrived
// kRequestTime after accept and be at most kMaxRequestBytes, and the answer must be written
// within kAnswerTime. cpp-httplib's own stream limits each read, so a client sending a byte at a
// time would keep a worker for as long as it liked. A larger request is refused here, with 431,
// which ends the exchange: cpp-httplib's own answer to the failed read goes nowhere.
class BudgetedStream : public httplib::Stream {
 public:
  BudgetedStream(int fd, Clock::time_point accepted) : fd_(fd), read_by_(accepted + kRequestTime) {}

  bool is_readable() const override { return !ended_ && wait_for(fd_, POLLIN, read_by_); }
  bool is_writable() const override { return !ended_ && wait_for(fd_, POLLOUT, write_by()); }

  ssize_t read(char* ptr, size_t size) override {
    if (!is_readable()) return -1;
    // One byte past the limit tells a request that is too large from one that fits exactly.
    const size_t room = kMaxRequestBytes - read_ + 1;
    const ssize_t n = ::recv(fd_, ptr, std::min(size, room), 0);
    if (n <= 0) return n;
    read_ += static_cast<size_t>(n);
    if (read_ > kMaxRequestBytes) {
      refuse_too_large();
      return -1;
    }
    return n;
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    return ::send(fd_, ptr, size, MSG_NOSIGNAL);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, false, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, true, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  Clock::time_point write_by() const {
    if (!write_by_) write_by_ = Clock::now() + kAnswerTime;
    return *write_by_;
  }

  void refuse_too_large() {
    const std::string body =
        "the request is larger than " + std::to_string(kMaxRequestBytes) +
        " bytes, the most this endpoint reads (a scrape is GET /metrics with a few headers)\n";
    const std::string answer =
        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    for (size_t at = 0; at < answer.size();) {
      const ssize_t n = write(answer.data() + at, answer.size() - at);
      if (n <= 0) break;
      at += static_cast<size_t>(n);
    }
    ended_ = true;
  }

  int fd_;
  Clock::time_point read_by_;
  mutable std::optional<Clock::time_point> write_by_;
  size_t read_ = 0;
  bool ended_ = false;
};

// Anything but a scrape is answered before cpp-httplib would read a request body.
httplib::Server::HandlerResponse refuse_all_but_scrapes(const httplib::Request& req,
                                                        httplib::Response& res) {
  if (req.path != "/metrics") {
    res.status = 404;
    res.set_content("metrics are at /metrics\n", "text/plain");
  } else if (req.method != "GET" && req.method != "HEAD") {
    res.status = 405;
    res.set_content("use GET\n", "text/plain");
  } else if (req.has_header("Transfer-Encoding") ||
             req.get_header_value<uint64_t>("Content-Length") > 0) {
    res.status = 413;
    res.set_content("a scrape has no request body\n", "text/plain");
  } else {
    return httplib::Server::HandlerResponse::Unhandled;
  }
  return httplib::Server::HandlerResponse::Handled;
}

}  // namespace

// cpp-httplib parses requests and writes answers; connections are served by WorkerPool, one
// request each, through BudgetedStream.
class Endpoint::Server : public httplib::Server {
 public:
  explicit Server(std::function<std::string()> render) {
    // cpp-httplib owns the queue it gets.
    new_task_queue = [] { return std::make_unique<WorkerPool>().release(); };
    set_pre_routing_handler(refuse_all_but_scrapes);
    Get("/metrics", [render = std::move(render)](const httplib::Request&, httplib::Response& res) {
      res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
    });
  }

  // Accepts connections on `listen_fd`, a listening socket it then owns, until stop().
  void serve(int listen_fd) {
    svr_sock_ = listen_fd;
    listen_after_bind();
    returned_ = true;
  }
  // Whether serve() has begun (stop() only stops a server that runs) or already ended.
  bool started() const { return is_running() || returned_; }

 private:
  // Replaces cpp-httplib's, which keeps a connection open for further requests and limits
  // each read rather than the whole request.
  bool process_and_close_socket(socket_t sock) override {
    BudgetedStream stream(sock, t_accepted);
    bool closed = false;
    const bool served = process_request(stream, /*close_connection=*/true, closed, nullptr);
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return served;
  }

  std::atomic<bool> returned_ = false;
};

Status Endpoint::check(const std::string& listen) {
  if (auto parsed = parse_listen(listen); !parsed) return fail(parsed.error());
  return {};
}

Result<std::unique_ptr<Endpoint>> Endpoint::start(const std::string& listen,
                                                  std::function<std::string()> render) {
  auto parsed = parse_listen(listen);
  if (!parsed) return fail(parsed.error());
  auto [addr, host] = *parsed;
  // Our own socket rather than cpp-httplib's: its default also sets SO_REUSEPORT, which would
  // let a second node share the port and take half the scrapes.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(ErrorCode::kIo, std::string("socket: ") + strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, kListenBacklog) != 0) {
    const int err = errno;
    ::close(fd);
    return fail(ErrorCode::kIo, "--metrics: cannot listen on " + listen + ": " + strerror(err));
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);

  std::unique_ptr<Endpoint> e(new Endpoint());
  e->host_ = host;
  e->port_ = ntohs(addr.sin_port);
  e->server_ = std::make_unique<Server>(std::move(render));
  e->thread_ = std::thread([server = e->server_.get(), fd] { server->serve(fd); });
  // So that the destructor's stop() finds it running.
  while (!e->server_->started()) std::this_thread::sleep_for(1ms);
  return e;
}

Endpoint::~Endpoint() {
  server_->stop();
  thread_.join();
}

std::string Endpoint::url() const {
  return "http://" + host_ + ":" + std::to_string(port_) + "/metrics";
}

}  // namespace nex::metrics
