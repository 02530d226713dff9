#include "metrics/endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace nex::metrics {

namespace {

constexpr size_t kMaxRequestBytes = 8192;
constexpr int kRequestTimeoutMs = 2000;

auto bad_listen(const std::string& listen, const std::string& why) {
  return fail(ErrorCode::kInvalidArgument,
              "--metrics: expected HOST:PORT (for example 127.0.0.1:9100) or :PORT, got '" +
                  listen + "'" + (why.empty() ? "" : ": " + why));
}

void write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

std::string response(int code, const char* reason, const std::string& content_type,
                     const std::string& body) {
  return "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
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

}  // namespace

Status Endpoint::check(const std::string& listen) {
  if (auto parsed = parse_listen(listen); !parsed) return fail(parsed.error());
  return {};
}

Result<std::unique_ptr<Endpoint>> Endpoint::start(const std::string& listen,
                                                  std::function<std::string()> render) {
  auto parsed = parse_listen(listen);
  if (!parsed) return fail(parsed.error());
  auto [addr, host] = *parsed;
  std::unique_ptr<Endpoint> e(new Endpoint());
  e->render_ = std::move(render);
  e->host_ = host;
  e->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (e->listen_fd_ < 0) return fail(ErrorCode::kIo, std::string("socket: ") + strerror(errno));
  int one = 1;
  ::setsockopt(e->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(e->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(e->listen_fd_, 16) != 0) {
    return fail(ErrorCode::kIo, "--metrics: cannot listen on " + listen + ": " + strerror(errno));
  }
  socklen_t len = sizeof addr;
  ::getsockname(e->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  e->port_ = ntohs(addr.sin_port);
  e->stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (e->stop_fd_ < 0) return fail(ErrorCode::kIo, std::string("eventfd: ") + strerror(errno));
  e->thread_ = std::thread([raw = e.get()] { raw->serve(); });
  return e;
}

Endpoint::~Endpoint() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

std::string Endpoint::url() const {
  return "http://" + host_ + ":" + std::to_string(port_) + "/metrics";
}

void Endpoint::serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    answer(fd);
    ::close(fd);
  }
}

void Endpoint::answer(int fd) {
  timeval tv{kRequestTimeoutMs / 1000, (kRequestTimeoutMs % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string request;
  char buf[2048];
  while (request.find("\r\n\r\n") == std::string::npos) {
    if (request.size() > kMaxRequestBytes) {
      write_all(fd, response(431, "Request Header Fields Too Large", "text/plain", "too large\n"));
      return;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // closed or too slow
    request.append(buf, static_cast<size_t>(n));
  }
  const std::string line = request.substr(0, request.find("\r\n"));
  const auto sp1 = line.find(' '), sp2 = line.find(' ', sp1 + 1);
  const std::string method = line.substr(0, sp1);
  std::string target = sp1 == std::string::npos ? "" : line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  if (target != "/metrics") {
    write_all(fd, response(404, "Not Found", "text/plain", "metrics are at /metrics\n"));
  } else if (method != "GET" && method != "HEAD") {
    write_all(fd, response(405, "Method Not Allowed", "text/plain", "use GET\n"));
  } else {
    std::string r = response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", render_());
    if (method == "HEAD") r = r.substr(0, r.find("\r\n\r\n") + 4);
    write_all(fd, r);
  }
}

}  // namespace nex::metrics
