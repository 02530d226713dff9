// nex-vm-gateway: hands one microVM connection to the node's gateway server and exits.
// QEMU's user network runs with `restrict=on` (the guest reaches nothing on the host or
// beyond) plus `guestfwd` rules that start this program for each connection the guest opens to
// the gateway address, with that connection as its standard input and output:
//
//   nex-vm-gateway SOCKET nats       the node's internal NATS: the server connects the guest
//                                    to 127.0.0.1:PORT, the port the VM was started with
//   nex-vm-gateway SOCKET exposed    the guest names a port on its first line ("4222\n"); the
//                                    server connects it to 127.0.0.1:PORT only if the node
//                                    exposed that port to this VM
//
// It sends its standard input over SOCKET (SCM_RIGHTS, with one byte naming the mode) and
// exits at once: the server (gateway_server.h) copies the bytes, caps the VM's connections and
// closes them when the VM stops, so no host process lives as long as a connection.
// It runs as the VMM's (unprivileged) user and writes nothing to stderr (that is the guest's
// socket too).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "microvm/gateway_server.h"

namespace {

// Connects to the unix socket at `path` from inside its directory, so a path longer than
// sun_path's 108 bytes still works.
int connect_unix(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (name.empty() || name.size() >= sizeof addr.sun_path || chdir(dir.c_str()) != 0) return -1;
  std::memcpy(addr.sun_path, name.c_str(), name.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return -1;
  return fd;
}

bool hand_over(int server, char mode, int connection) {
  iovec iov{&mode, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &connection, sizeof connection);
  return sendmsg(server, &msg, MSG_NOSIGNAL) == 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  using nex::microvm::GatewayMode;
  GatewayMode mode;
  if (std::strcmp(argv[2], "nats") == 0) {
    mode = GatewayMode::kInternalNats;
  } else if (std::strcmp(argv[2], "exposed") == 0) {
    mode = GatewayMode::kExposed;
  } else {
    return 2;
  }
  const int server = connect_unix(argv[1]);
  if (server < 0) return 1;
  return hand_over(server, static_cast<char>(mode), STDIN_FILENO) ? 0 : 1;
}
