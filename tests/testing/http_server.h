// HttpServer: a small HTTP/1.1 server for tests of the HTTP host service, on 127.0.0.1 or another
// IPv4 address of the test's. Each connection carries one request; the handler sees the method,
// path, headers and body. It counts the connections it accepts, so a test can tell that nothing
// connected at all.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace nex::testing {

struct HttpRequest {
  std::string method, path, body;
  std::map<std::string, std::string> headers;  // names lower-cased
};

struct HttpResponse {
  int status = 200;
  std::map<std::string, std::string> headers;
  std::string body;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  explicit HttpServer(Handler handler, std::string address = "127.0.0.1")
      : handler_(std::move(handler)), address_(std::move(address)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    ::inet_pton(AF_INET, address_.c_str(), &addr.sin_addr);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(fd_, 64);
    accept_ = std::thread([this] { loop(); });
  }
  ~HttpServer() {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    accept_.join();
    for (auto& t : workers_) t.join();
  }

  int port() const { return port_; }
  std::string url(const std::string& path) const {
    return "http://" + address_ + ":" + std::to_string(port_) + path;
  }

  // How many connections came before this call: it connects itself, and counts once its own
  // connection has been accepted (connections are accepted in the order they came).
  int connections_before_now() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    ::inet_pton(AF_INET, address_.c_str(), &addr.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      const std::string probe = "GET /connections-probe HTTP/1.1\r\n\r\n";
      (void)!::write(fd, probe.data(), probe.size());
      char buf[256];
      while (::read(fd, buf, sizeof buf) > 0) {
      }
    }
    ::close(fd);
    return connections_ - 1;
  }

 private:
  void loop() {
    while (!stopping_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++connections_;
      workers_.emplace_back([this, c] { serve(c); });
    }
  }
  void serve(int c) {
    std::string in;
    char buf[65536];
    size_t header_end;
    while ((header_end = in.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) return (void)::close(c);
      in.append(buf, static_cast<size_t>(n));
    }
    HttpRequest req;
    std::string head = in.substr(0, header_end);
    size_t line_end = head.find("\r\n");
    std::string first = head.substr(0, line_end);
    req.method = first.substr(0, first.find(' '));
    req.path = first.substr(first.find(' ') + 1, first.rfind(' ') - first.find(' ') - 1);
    for (size_t at = line_end + 2; at < head.size() && line_end != std::string::npos;) {
      size_t end = head.find("\r\n", at);
      if (end == std::string::npos) end = head.size();
      std::string line = head.substr(at, end - at);
      if (auto colon = line.find(':'); colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), ::tolower);
        req.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
      }
      at = end + 2;
    }
    size_t length =
        req.headers.count("content-length") ? std::stoul(req.headers["content-length"]) : 0;
    req.body = in.substr(header_end + 4);
    while (req.body.size() < length) {
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      req.body.append(buf, static_cast<size_t>(n));
    }
    HttpResponse res = req.path == "/connections-probe" ? HttpResponse{204, {}, ""} : handler_(req);
    std::string out = "HTTP/1.1 " + std::to_string(res.status) + " X\r\nConnection: close\r\n";
    for (const auto& [k, v] : res.headers) out += k + ": " + v + "\r\n";
    if (req.method != "HEAD") out += "Content-Length: " + std::to_string(res.body.size()) + "\r\n";
    out += "\r\n";
    if (req.method != "HEAD") out += res.body;
    for (size_t at = 0; at < out.size();) {
      ssize_t n = ::write(c, out.data() + at, out.size() - at);
      if (n <= 0) break;
      at += static_cast<size_t>(n);
    }
    ::close(c);
  }

  Handler handler_;
  std::string address_;
  std::atomic<int> connections_{0};
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_;
  std::vector<std::thread> workers_;
};

}  // namespace nex::testing
