// nex-vm-gateway: what a microVM's network reaches on the host, one connection at a time.
// QEMU's user network runs with `restrict=on` (the guest reaches nothing on the host or beyond)
// plus `guestfwd` rules that start this program for each connection the guest opens to the
// gateway address, with that connection as its standard input and output:
//
//   nex-vm-gateway to PORT         the node's internal NATS: connect to 127.0.0.1:PORT
//   nex-vm-gateway exposed FILE    the guest names a port on its first line ("4222\n"); it is
//                                  connected to 127.0.0.1:PORT only if FILE lists that port
//                                  (the node writes FILE as it exposes ports to this VM)
//
// It runs as the VMM's (unprivileged) user, writes nothing to stderr (that is the guest's
// socket too), and exits when either side closes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace {

int connect_loopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return -1;
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int parse_port(const std::string& s) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  const int port = std::atoi(s.c_str());
  return port > 0 && port < 65536 ? port : -1;
}

bool write_all(int fd, const char* p, ssize_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, static_cast<size_t>(n));
    if (w <= 0) return false;
    p += w;
    n -= w;
  }
  return true;
}

// The guest's first line, read a byte at a time so nothing after it is consumed.
int read_port_line() {
  std::string line;
  for (;;) {
    pollfd in{STDIN_FILENO, POLLIN, 0};
    if (poll(&in, 1, 5000) <= 0) return -1;
    char c;
    if (read(STDIN_FILENO, &c, 1) != 1) return -1;
    if (c == '\n') return parse_port(line);
    if (line.size() >= 5) return -1;
    line.push_back(c);
  }
}

bool listed(const char* file, int port) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (parse_port(line) == port) return true;
  }
  return false;
}

void pump(int upstream) {
  char buf[65536];
  for (;;) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {upstream, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) return;
    if (fds[0].revents) {
      const ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
      if (n <= 0 || !write_all(upstream, buf, n)) return;
    }
    if (fds[1].revents) {
      const ssize_t n = read(upstream, buf, sizeof buf);
      if (n <= 0 || !write_all(STDOUT_FILENO, buf, n)) return;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  int port = -1;
  if (std::strcmp(argv[1], "to") == 0) {
    port = parse_port(argv[2]);
  } else if (std::strcmp(argv[1], "exposed") == 0) {
    port = read_port_line();
    if (port > 0 && !listed(argv[2], port)) port = -1;
  }
  if (port < 0) return 1;
  const int upstream = connect_loopback(port);
  if (upstream < 0) return 1;
  pump(upstream);
  return 0;
}
