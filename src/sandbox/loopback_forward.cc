#include "sandbox/loopback_forward.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>

namespace nex::sandbox {

Result<std::unique_ptr<LoopbackForwarder>> LoopbackForwarder::start(int netns_fd, int port,
                                                                    std::string target_host,
                                                                    int target_port,
                                                                    std::string preamble) {
  std::unique_ptr<LoopbackForwarder> f(new LoopbackForwarder());
  f->target_host_ = std::move(target_host);
  f->target_port_ = target_port;
  f->preamble_ = std::move(preamble);
  // A socket belongs to the network namespace it was made in: make it on a thread that joins
  // the sandbox's namespace for that moment only.
  int err = 0;
  std::thread maker([&] {
    if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(fd, 64) != 0) {
      err = errno;
      if (fd >= 0) close(fd);
      return;
    }
    f->listen_fd_ = fd;
  });
  maker.join();
  if (f->listen_fd_ < 0)
    return fail(ErrorCode::kIo, "cannot listen on 127.0.0.1:" + std::to_string(port) +
                                    (netns_fd >= 0 ? " in the sandbox: " : ": ") + strerror(err));
  f->stop_fd_ = eventfd(0, EFD_CLOEXEC);
  f->acceptor_ = std::thread([p = f.get()] { p->accept_loop(); });
  return f;
}

LoopbackForwarder::~LoopbackForwarder() {
  const uint64_t one = 1;
  if (stop_fd_ >= 0) (void)!write(stop_fd_, &one, sizeof one);
  {
    std::lock_guard lock(mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);  // unblocks a pump stuck in write()
  }
  if (acceptor_.joinable()) acceptor_.join();
  for (auto& t : threads_) t.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

void LoopbackForwarder::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[0].revents) return;
    if (!(fds[1].revents & POLLIN)) continue;
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    const int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(target_port_));
    inet_pton(AF_INET, target_host_.c_str(), &addr.sin_addr);
    if (upstream < 0 || connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        (!preamble_.empty() && write(upstream, preamble_.data(), preamble_.size()) !=
                                   static_cast<ssize_t>(preamble_.size()))) {
      close(client);
      if (upstream >= 0) close(upstream);
      continue;
    }
    // NATS is small messages answered at once: never hold one back waiting for an ack.
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard lock(mu_);
    open_fds_.push_back(client);
    open_fds_.push_back(upstream);
    threads_.emplace_back([this, client, upstream] { pump(client, upstream); });
  }
}

void LoopbackForwarder::pump(int a, int b) {
  char buf[65536];
  for (bool open = true; open;) {
    pollfd fds[3] = {{stop_fd_, POLLIN, 0}, {a, POLLIN, 0}, {b, POLLIN, 0}};
    if (poll(fds, 3, -1) < 0 && errno != EINTR) break;
    if (fds[0].revents) break;
    for (int i = 1; i <= 2 && open; ++i) {
      if (!fds[i].revents) continue;
      const int from = fds[i].fd, to = from == a ? b : a;
      const ssize_t n = read(from, buf, sizeof buf);
      if (n <= 0) {
        open = false;
        break;
      }
      for (ssize_t off = 0; off < n;) {
        const ssize_t w = write(to, buf + off, static_cast<size_t>(n - off));
        if (w <= 0) {
          open = false;
          break;
        }
        off += w;
      }
    }
  }
  std::lock_guard lock(mu_);
  open_fds_.erase(std::remove_if(open_fds_.begin(), open_fds_.end(),
                                 [&](int fd) { return fd == a || fd == b; }),
                  open_fds_.end());
  close(a);
  close(b);
}

std::vector<std::string> nats_urls(const std::map<std::string, std::string>& environment) {
  std::vector<std::string> urls;
  auto it = environment.find("NATS_URL");
  if (it == environment.end()) return urls;
  std::istringstream list(it->second);
  for (std::string url; std::getline(list, url, ',');) urls.push_back(url);
  return urls;
}

std::vector<int> loopback_nats_ports(const std::map<std::string, std::string>& environment) {
  std::vector<int> ports;
  for (const auto& url : nats_urls(environment)) {
    if (auto port = loopback_port(url)) ports.push_back(*port);
  }
  return ports;
}

std::optional<int> loopback_port(std::string url) {
  // [scheme://][user[:pass]@]host[:port]
  if (auto p = url.find("://"); p != std::string::npos) url = url.substr(p + 3);
  if (auto p = url.rfind('@'); p != std::string::npos) url = url.substr(p + 1);
  if (auto p = url.find('/'); p != std::string::npos) url = url.substr(0, p);
  const size_t colon = url.rfind(':');
  const std::string host = url.substr(0, colon);
  if (host != "localhost" && host != "127.0.0.1") return std::nullopt;
  int port = 4222;
  if (colon != std::string::npos) {
    try {
      port = std::stoi(url.substr(colon + 1));
    } catch (...) {
      return std::nullopt;
    }
  }
  if (port > 0 && port < 65536) return port;
  return std::nullopt;
}

}  // namespace nex::sandbox
