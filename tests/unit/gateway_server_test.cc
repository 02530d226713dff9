// The microVM gateway server without a VM: the real nex-vm-gateway hands it one end of a
// socket pair (as QEMU's user network hands it a guest's connection), and the test plays the
// guest on the other end, with a loopback echo server as the host's NATS.
#include "microvm/gateway_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "core/unique_fd.h"

namespace nex::microvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const fs::path kGateway = fs::read_symlink("/proc/self/exe").parent_path() / "nex-vm-gateway";

// A loopback server that greets each connection with "hello\n", then echoes what it gets.
class EchoServer {
 public:
  EchoServer() {
    listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listener_.get(), 512);
    ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~EchoServer() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    acceptor_.join();
    std::lock_guard lock(mu_);
    for (auto& [fd, t] : clients_) ::shutdown(fd, SHUT_RDWR);
    for (auto& [fd, t] : clients_) t.join();
    for (auto& [fd, t] : clients_) ::close(fd);
  }
  int port() const { return port_; }
  int accepted() const { return accepted_; }
  int open() const { return open_; }

 private:
  void accept_loop() {
    for (;;) {
      const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      ++accepted_;
      ++open_;
      std::lock_guard lock(mu_);
      clients_.emplace_back(fd, std::thread([this, fd] { echo(fd); }));
    }
  }
  void echo(int fd) {
    if (::write(fd, "hello\n", 6) == 6) {
      char buf[65536];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) {
        ssize_t done = 0;
        while (done < n) {
          const ssize_t w = ::write(fd, buf + done, static_cast<size_t>(n - done));
          if (w <= 0) break;
          done += w;
        }
        if (done < n) break;
      }
    }
    --open_;
  }

  UniqueFd listener_;
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::atomic<int> open_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::pair<int, std::thread>> clients_;
};

// Runs nex-vm-gateway with one end of a socket pair as its standard input and output, as
// QEMU does for a guest's connection; the other end, once the program has exited (with 0
// unless the server may have refused it before it could send).
UniqueFd hand_over(const fs::path& socket, const char* mode, bool may_be_refused = false) {
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(sp[1], 0);
    ::dup2(sp[1], 1);
    ::dup2(sp[1], 2);
    ::execl(kGateway.c_str(), kGateway.c_str(), socket.c_str(), mode, nullptr);
    ::_exit(127);
  }
  ::close(sp[1]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || may_be_refused))
      << "nex-vm-gateway failed";
  return UniqueFd(sp[0]);
}

// What arrives on `fd` within `t`: up to `want` bytes, fewer if it closes; "EOF" if it closed
// with nothing, "" if nothing came.
std::string receive(int fd, size_t want, std::chrono::milliseconds t = 5s) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + t;
  while (got.size() < want) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[65536];
    const ssize_t n = ::read(fd, buf, std::min(sizeof buf, want - got.size()));
    if (n <= 0) return got.empty() ? "EOF" : got;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

bool eventually(const std::function<bool()>& f, std::chrono::milliseconds t = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + t;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return f();
}

class GatewayServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kGateway)) GTEST_SKIP() << kGateway << " is not built";
    dir_ = fs::temp_directory_path() / ("nex-gateway-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void start(int cap) {
    auto s = GatewayServer::start(cap, [this](const std::string& id, const std::string& text) {
      std::lock_guard lock(mu_);
      warnings_.push_back(id + ": " + text);
    });
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
    auto vm = server_->add_vm({.workload_id = "w1",
                               .socket = socket(),
                               .vmm_uid = ::geteuid(),
                               .internal_nats_port = upstream_.port()});
    ASSERT_TRUE(vm) << vm.error().message;
    vm_ = std::move(*vm);
  }
  fs::path socket() const { return dir_ / "gateway.sock"; }
  size_t warnings() {
    std::lock_guard lock(mu_);
    return warnings_.size();
  }

  fs::path dir_;
  EchoServer upstream_;
  std::mutex mu_;
  std::vector<std::string> warnings_;
  std::unique_ptr<GatewayServer> server_;  // its thread ends before what it warns into
  std::unique_ptr<GatewayServer::Vm> vm_;
};

TEST_F(GatewayServerTest, CarriesAHandedOverConnectionToTheInternalNatsBothWays) {
  start(8);
  UniqueFd guest = hand_over(socket(), "nats");  // the program has exited by now
  ASSERT_EQ(receive(guest.get(), 6), "hello\n");
  // More than any socket buffer holds, so both directions wait on each other at times.
  std::string big(4 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4099) big[i] = static_cast<char>('a' + i % 26);
  std::thread writer([&] {
    for (size_t done = 0; done < big.size();) {
      const ssize_t w = ::write(guest.get(), big.data() + done, big.size() - done);
      if (w <= 0) return;
      done += static_cast<size_t>(w);
    }
  });
  const std::string echoed = receive(guest.get(), big.size(), 30s);
  writer.join();
  EXPECT_EQ(echoed.size(), big.size());
  EXPECT_TRUE(echoed == big) << "the bytes came back changed";
  EXPECT_EQ(upstream_.accepted(), 1);
  EXPECT_EQ(vm_->connections(), 1u);
}

// The guest stops reading while the host's side still sends to it: the server's write fails
// (EPIPE), which must end that connection and not the process (SIGPIPE).
TEST_F(GatewayServerTest, AGuestThatStopsReadingEndsOnlyItsConnection) {
  start(8);
  UniqueFd guest = hand_over(socket(), "nats");
  ASSERT_EQ(receive(guest.get(), 6), "hello\n");
  ASSERT_EQ(::shutdown(guest.get(), SHUT_RD), 0);
  ASSERT_EQ(::send(guest.get(), "ping\n", 5, MSG_DONTWAIT), 5);  // echoed to a closed reader
  EXPECT_TRUE(eventually([&] { return vm_->connections() == 0; }));
  UniqueFd again = hand_over(socket(), "nats");
  EXPECT_EQ(receive(again.get(), 6), "hello\n");
}

TEST_F(GatewayServerTest, ConnectionsOverTheCapAreClosedAtOnceAndLoggedOncePerBurst) {
  start(3);
  std::vector<UniqueFd> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(hand_over(socket(), "nats"));
    ASSERT_EQ(receive(held.back().get(), 6), "hello\n") << "connection " << i;
  }
  for (int i = 0; i < 5; ++i) {
    UniqueFd over = hand_over(socket(), "nats");
    EXPECT_EQ(receive(over.get(), 6), "EOF") << "connection " << 3 + i << " over the cap of 3";
  }
  EXPECT_EQ(upstream_.accepted(), 3) << "the host's server took connections over the cap";
  EXPECT_TRUE(eventually([&] { return warnings() > 0; }));
  EXPECT_EQ(warnings(), 1u) << "five refusals in a burst, logged " << warnings() << " times";
  {
    std::lock_guard lock(mu_);
    EXPECT_NE(warnings_[0].find("w1: "), std::string::npos) << warnings_[0];
    EXPECT_NE(warnings_[0].find("more than 3 connections"), std::string::npos) << warnings_[0];
  }

  // One closed: its place is free again, and the host side is closed with it.
  held.pop_back();
  EXPECT_TRUE(eventually([&] { return vm_->connections() == 2 && upstream_.open() == 2; }));
  UniqueFd again = hand_over(socket(), "nats");
  EXPECT_EQ(receive(again.get(), 6), "hello\n");
}

TEST_F(GatewayServerTest, ExposedModeReachesOnlyThePortsTheNodeExposed) {
  start(8);
  const std::string line = std::to_string(upstream_.port()) + "\n";
  UniqueFd early = hand_over(socket(), "exposed");
  ASSERT_EQ(::write(early.get(), line.data(), line.size()), static_cast<ssize_t>(line.size()));
  EXPECT_EQ(receive(early.get(), 6), "EOF") << "a port the node never exposed was reached";

  vm_->expose(upstream_.port());
  const std::vector<std::string> bad_lines = {"abc\n", "123456\n", "0\n",
                                              std::to_string(upstream_.port() + 1) + "\n"};
  for (const std::string& bad : bad_lines) {
    UniqueFd c = hand_over(socket(), "exposed");
    ASSERT_EQ(::write(c.get(), bad.data(), bad.size()), static_cast<ssize_t>(bad.size()));
    EXPECT_EQ(receive(c.get(), 6), "EOF") << "first line " << bad;
  }
  EXPECT_EQ(upstream_.accepted(), 0);

  // The port line and what follows it in one write: nothing after the line is lost.
  UniqueFd ok = hand_over(socket(), "exposed");
  const std::string ask = line + "ping\n";
  ASSERT_EQ(::write(ok.get(), ask.data(), ask.size()), static_cast<ssize_t>(ask.size()));
  EXPECT_EQ(receive(ok.get(), 11), "hello\nping\n");
}

TEST_F(GatewayServerTest, RemovingAVmClosesItsConnectionsAndItsSocket) {
  start(8);
  UniqueFd guest = hand_over(socket(), "nats");
  ASSERT_EQ(receive(guest.get(), 6), "hello\n");
  struct stat st {};
  ASSERT_EQ(::stat(socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the socket is for the VM's QEMU user alone";

  vm_.reset();
  EXPECT_EQ(receive(guest.get(), 1), "EOF") << "the guest's connection outlived its VM";
  EXPECT_TRUE(eventually([&] { return upstream_.open() == 0; })) << "the host side stayed open";
  EXPECT_FALSE(fs::exists(socket())) << "the VM's socket was left behind";
}

TEST_F(GatewayServerTest, OnlyTheVmsQemuUserMayHandConnectionsOver) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to give the socket to another user";
  auto s = GatewayServer::start(8, nullptr);
  ASSERT_TRUE(s) << s.error().message;
  const uid_t someone_else = ::geteuid() + 4242;
  auto vm = (*s)->add_vm({.workload_id = "w2",
                          .socket = socket(),
                          .vmm_uid = someone_else,
                          .internal_nats_port = upstream_.port()});
  ASSERT_TRUE(vm) << vm.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, someone_else);
  // This test's user can open the socket (root can, whatever its mode), but is not the VM's:
  // the server closes it, before or after nex-vm-gateway sent the connection.
  UniqueFd guest = hand_over(socket(), "nats", true);
  EXPECT_EQ(receive(guest.get(), 6), "EOF");
  EXPECT_EQ(upstream_.accepted(), 0);
}

}  // namespace
}  // namespace nex::microvm
