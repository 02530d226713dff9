#include "microvm/gateway_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/unique_fd.h"

namespace nex::microvm {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// How long nex-vm-gateway has to send the connection once it connected, and a guest to name
// its port in exposed mode; a connection waiting for either counts against nothing else.
constexpr auto kFirstBytesWithin = 5s;
// Refusals closer together than this are one burst, which the node logs once.
constexpr auto kBurstQuiet = 10s;
constexpr size_t kChunk = 64 * 1024;
constexpr uint32_t kIn = EPOLLIN;
constexpr uint32_t kOut = EPOLLOUT;

// What an epoll event is about: the low two bits of its token; the rest is an id.
enum Kind : uint64_t { kListener = 0, kHandoff = 1, kGuest = 2, kUpstream = 3 };
constexpr uint64_t kWakeToken = 0;  // id 0 is never a VM's
uint64_t token(uint64_t id, Kind kind) { return id << 2 | kind; }

int parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string_view::npos)
    return -1;
  const int port = std::stoi(std::string(s));
  return port > 0 && port < 65536 ? port : -1;
}

std::string errno_text() { return std::strerror(errno); }

// A unix socket listening at `path`, owned by `owner` with mode 0600. Bound through its
// directory's /proc/self/fd entry: sun_path holds 108 bytes, a node's state paths may not.
Result<UniqueFd> listen_unix(const fs::path& path, uid_t owner) {
  UniqueFd dir(::open(path.parent_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid())
    return fail(ErrorCode::kIo,
                "gateway socket directory " + path.parent_path().string() + ": " + errno_text());
  const std::string name = path.filename();
  const std::string via = "/proc/self/fd/" + std::to_string(dir.get()) + "/" + name;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (via.size() >= sizeof addr.sun_path)
    return fail(ErrorCode::kInvalidArgument, "gateway socket name too long: " + name);
  std::memcpy(addr.sun_path, via.c_str(), via.size() + 1);
  ::unlinkat(dir.get(), name.c_str(), 0);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::fchownat(dir.get(), name.c_str(), owner, static_cast<gid_t>(owner), 0) != 0 ||
      ::fchmodat(dir.get(), name.c_str(), 0600, 0) != 0 || ::listen(fd.get(), SOMAXCONN) != 0)
    return fail(ErrorCode::kIo, "gateway socket " + path.string() + ": " + errno_text());
  return fd;
}

// A non-blocking connection under way (or made) to 127.0.0.1:port; invalid when refused.
UniqueFd connect_loopback(int port, bool& in_progress) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  const int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  in_progress = rc != 0 && errno == EINPROGRESS;
  if (rc != 0 && !in_progress) fd.reset();
  return fd;
}

// Descriptors are what a busy node runs out of first: each connection holds two.
void raise_descriptor_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

enum class Phase { kNamingPort, kConnecting, kSplicing };

struct VmEntry {
  GatewayVmSpec spec;
  UniqueFd listener;
  std::set<int> exposed;
  std::set<uint64_t> handoffs;
  std::set<uint64_t> conns;
  std::optional<Clock::time_point> last_refusal;
};

struct Handoff {
  uint64_t vm = 0;
  UniqueFd fd;
};

struct Conn {
  uint64_t vm = 0;
  Phase phase = Phase::kNamingPort;
  UniqueFd guest;
  UniqueFd upstream;
  std::string line;         // exposed mode: the port line so far
  std::string to_upstream;  // read from the guest, not yet written
  std::string to_guest;     // read from upstream, not yet written
  bool guest_ended = false;
  bool upstream_ended = false;
};

}  // namespace

struct GatewayServer::State {
  int cap = 0;
  Warn warn;
  UniqueFd epoll;
  UniqueFd wake;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::mutex mu;
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, VmEntry> vms;
  std::unordered_map<uint64_t, Handoff> handoffs;
  std::unordered_map<uint64_t, Conn> conns;
  std::map<uint64_t, Clock::time_point> deadlines;        // handoffs and conns naming a port
  std::vector<std::pair<std::string, std::string>> said;  // warnings, for outside the lock

  void run();
  int next_timeout_ms();
  void on_event(uint64_t tok, uint32_t events);
  void accept_all(uint64_t vm_id);
  void receive(uint64_t handoff_id);
  void admit(uint64_t vm_id, GatewayMode mode, UniqueFd guest);
  void refuse(VmEntry& vm);
  void name_port(uint64_t id, Conn& c);
  void connect_upstream(uint64_t id, Conn& c, int port);
  void on_conn_event(uint64_t id, Kind side, uint32_t events);
  bool pump(Conn& c, bool from_guest, bool drain);
  bool flush(Conn& c, bool to_guest);
  bool watch(uint64_t id, Conn& c);
  bool ctl(int op, int fd, uint64_t tok, uint32_t events);
  void close_conn(uint64_t id);
  void close_handoff(uint64_t id);
  void remove_vm(uint64_t id);
  void expire();
};

bool GatewayServer::State::ctl(int op, int fd, uint64_t tok, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tok;
  return ::epoll_ctl(epoll.get(), op, fd, &ev) == 0;
}

void GatewayServer::State::run() {
  epoll_event events[64];
  while (!stopping) {
    int timeout;
    {
      std::lock_guard lock(mu);
      timeout = next_timeout_ms();
    }
    const int n = ::epoll_wait(epoll.get(), events, 64, timeout);
    std::vector<std::pair<std::string, std::string>> warnings;
    {
      std::lock_guard lock(mu);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == kWakeToken) {
          uint64_t count;
          (void)!::read(wake.get(), &count, sizeof count);
          continue;
        }
        on_event(events[i].data.u64, events[i].events);
      }
      expire();
      warnings.swap(said);
    }
    for (const auto& [workload, text] : warnings)
      if (warn) warn(workload, text);
  }
}

int GatewayServer::State::next_timeout_ms() {
  if (deadlines.empty()) return -1;
  auto first = deadlines.begin()->second;
  for (const auto& [id, at] : deadlines) first = std::min(first, at);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(first - Clock::now());
  return static_cast<int>(std::max<int64_t>(ms.count() + 1, 0));
}

void GatewayServer::State::on_event(uint64_t tok, uint32_t events) {
  const uint64_t id = tok >> 2;
  switch (static_cast<Kind>(tok & 3)) {
    case kListener:
      if (vms.contains(id)) accept_all(id);
      return;
    case kHandoff:
      if (handoffs.contains(id)) receive(id);
      return;
    case kGuest:
    case kUpstream:
      if (conns.contains(id)) on_conn_event(id, static_cast<Kind>(tok & 3), events);
      return;
  }
}

void GatewayServer::State::accept_all(uint64_t vm_id) {
  VmEntry& vm = vms.at(vm_id);
  for (;;) {
    UniqueFd fd(::accept4(vm.listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) return;  // EAGAIN, or out of descriptors: the next event tries again
    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 ||
        peer.uid != vm.spec.vmm_uid)
      continue;  // only this VM's QEMU (its nex-vm-gateway) hands connections over
    const uint64_t id = next_id++;
    if (!ctl(EPOLL_CTL_ADD, fd.get(), token(id, kHandoff), EPOLLIN)) continue;
    handoffs.emplace(id, Handoff{vm_id, std::move(fd)});
    vm.handoffs.insert(id);
    deadlines[id] = Clock::now() + kFirstBytesWithin;
  }
}

// nex-vm-gateway's one message: a mode byte, with the guest's connection as SCM_RIGHTS.
void GatewayServer::State::receive(uint64_t handoff_id) {
  Handoff& h = handoffs.at(handoff_id);
  char mode = 0;
  iovec iov{&mode, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(h.fd.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = n > 0 ? CMSG_FIRSTHDR(&msg) : nullptr; c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  const uint64_t vm_id = h.vm;
  close_handoff(handoff_id);
  const bool valid_mode = mode == static_cast<char>(GatewayMode::kInternalNats) ||
                          mode == static_cast<char>(GatewayMode::kExposed);
  if (n != 1 || fds.size() != 1 || !valid_mode || (msg.msg_flags & MSG_CTRUNC)) return;
  const int flags = ::fcntl(fds[0].get(), F_GETFL);
  if (flags < 0 || ::fcntl(fds[0].get(), F_SETFL, flags | O_NONBLOCK) != 0) return;
  admit(vm_id, static_cast<GatewayMode>(mode), std::move(fds[0]));
}

void GatewayServer::State::admit(uint64_t vm_id, GatewayMode mode, UniqueFd guest) {
  VmEntry& vm = vms.at(vm_id);
  if (vm.conns.size() >= static_cast<size_t>(cap)) {
    refuse(vm);
    return;  // `guest` closes here: the guest sees its connection end at once
  }
  const uint64_t id = next_id++;
  Conn& c = conns.emplace(id, Conn{.vm = vm_id, .guest = std::move(guest)}).first->second;
  vm.conns.insert(id);
  if (!ctl(EPOLL_CTL_ADD, c.guest.get(), token(id, kGuest), 0)) {
    close_conn(id);
    return;
  }
  if (mode == GatewayMode::kInternalNats) {
    connect_upstream(id, c, vm.spec.internal_nats_port);
    return;
  }
  deadlines[id] = Clock::now() + kFirstBytesWithin;
  if (!watch(id, c)) close_conn(id);
}

void GatewayServer::State::refuse(VmEntry& vm) {
  const auto now = Clock::now();
  if (!vm.last_refusal || now - *vm.last_refusal >= kBurstQuiet)
    said.emplace_back(vm.spec.workload_id,
                      "its VM opened more than " + std::to_string(cap) +
                          " connections through its gateway at once; the node closes those "
                          "over the cap (microvm_gateway_max_connections) and logs this once "
                          "per burst");
  vm.last_refusal = now;
}

// Exposed mode: "PORT\n" first, read as it comes; what follows it goes upstream.
void GatewayServer::State::name_port(uint64_t id, Conn& c) {
  char buf[64];
  const ssize_t n = ::read(c.guest.get(), buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) return close_conn(id);
  const std::string_view got(buf, static_cast<size_t>(n));
  const size_t newline = got.find('\n');
  c.line.append(got.substr(0, newline));
  if (c.line.size() > 5) return close_conn(id);
  if (newline == std::string_view::npos) return;
  c.to_upstream.append(got.substr(newline + 1));
  const int port = parse_port(c.line);
  if (port < 0 || !vms.at(c.vm).exposed.contains(port)) return close_conn(id);
  deadlines.erase(id);
  connect_upstream(id, c, port);
}

void GatewayServer::State::connect_upstream(uint64_t id, Conn& c, int port) {
  bool in_progress = false;
  c.upstream = connect_loopback(port, in_progress);
  if (!c.upstream.valid() || !ctl(EPOLL_CTL_ADD, c.upstream.get(), token(id, kUpstream), 0))
    return close_conn(id);
  c.phase = in_progress ? Phase::kConnecting : Phase::kSplicing;
  if (!watch(id, c)) close_conn(id);
}

// Reads what `from` has and passes it on, keeping what the other side cannot take yet (and
// then reading no more from `from`, unless it is `drain`ing a side that hung up). False once
// the connection is to close. Sends use MSG_NOSIGNAL: a peer gone must not SIGPIPE the node.
bool GatewayServer::State::pump(Conn& c, bool from_guest, bool drain) {
  const int in = from_guest ? c.guest.get() : c.upstream.get();
  const int out = from_guest ? c.upstream.get() : c.guest.get();
  std::string& pending = from_guest ? c.to_upstream : c.to_guest;
  bool& ended = from_guest ? c.guest_ended : c.upstream_ended;
  char buf[kChunk];
  while (pending.empty() || drain) {
    const ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n <= 0) {
      ended = true;
      return !pending.empty();  // ends once what it sent is passed on
    }
    if (pending.empty()) {
      const ssize_t w = ::send(out, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN && errno != EINTR) return false;
      pending.assign(buf + std::max<ssize_t>(w, 0), buf + n);
    } else {
      pending.append(buf, static_cast<size_t>(n));
    }
  }
  return true;
}

// Writes what waits for one side. False once the connection is to close.
bool GatewayServer::State::flush(Conn& c, bool to_guest) {
  std::string& pending = to_guest ? c.to_guest : c.to_upstream;
  const int out = to_guest ? c.guest.get() : c.upstream.get();
  while (!pending.empty()) {
    const ssize_t w = ::send(out, pending.data(), pending.size(), MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (w <= 0) return false;
    pending.erase(0, static_cast<size_t>(w));
  }
  return !(to_guest ? c.upstream_ended : c.guest_ended);
}

void GatewayServer::State::on_conn_event(uint64_t id, Kind side, uint32_t events) {
  Conn& c = conns.at(id);
  const bool guest = side == kGuest;
  if (c.phase == Phase::kNamingPort) {
    if (guest) name_port(id, c);
    return;
  }
  if (c.phase == Phase::kConnecting) {
    // The guest is not watched yet: an event from it is it hanging up.
    if (guest) return close_conn(id);
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(c.upstream.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
      return close_conn(id);
    c.phase = Phase::kSplicing;
  } else {
    const bool hung_up = events & (EPOLLHUP | EPOLLERR);
    if ((events & EPOLLOUT) && !flush(c, guest)) return close_conn(id);
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !pump(c, guest, hung_up))
      return close_conn(id);
  }
  if (!watch(id, c)) close_conn(id);
}

// What each side is watched for: reading while the other side has nothing waiting for it,
// writing while it has; a side that ended is no longer watched at all.
bool GatewayServer::State::watch(uint64_t id, Conn& c) {
  uint32_t g = 0;
  uint32_t u = 0;
  switch (c.phase) {
    case Phase::kNamingPort:
      g = EPOLLIN;
      break;
    case Phase::kConnecting:
      u = EPOLLOUT;
      break;
    case Phase::kSplicing:
      g = (c.to_upstream.empty() ? kIn : 0) | (c.to_guest.empty() ? 0 : kOut);
      u = (c.to_guest.empty() ? kIn : 0) | (c.to_upstream.empty() ? 0 : kOut);
      break;
  }
  if (c.guest_ended) {
    ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, c.guest.get(), nullptr);
  } else if (!ctl(EPOLL_CTL_MOD, c.guest.get(), token(id, kGuest), g)) {
    return false;
  }
  if (!c.upstream.valid()) return true;
  if (c.upstream_ended) {
    ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, c.upstream.get(), nullptr);
    return true;
  }
  return ctl(EPOLL_CTL_MOD, c.upstream.get(), token(id, kUpstream), u);
}

void GatewayServer::State::close_conn(uint64_t id) {
  auto it = conns.find(id);
  if (it == conns.end()) return;
  for (const UniqueFd* fd : {&it->second.guest, &it->second.upstream})
    if (fd->valid()) ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, fd->get(), nullptr);
  if (auto vm = vms.find(it->second.vm); vm != vms.end()) vm->second.conns.erase(id);
  deadlines.erase(id);
  conns.erase(it);
}

void GatewayServer::State::close_handoff(uint64_t id) {
  auto it = handoffs.find(id);
  if (it == handoffs.end()) return;
  ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
  if (auto vm = vms.find(it->second.vm); vm != vms.end()) vm->second.handoffs.erase(id);
  deadlines.erase(id);
  handoffs.erase(it);
}

void GatewayServer::State::remove_vm(uint64_t id) {
  auto it = vms.find(id);
  if (it == vms.end()) return;
  VmEntry& vm = it->second;
  for (uint64_t c : std::set<uint64_t>(vm.conns)) close_conn(c);
  for (uint64_t h : std::set<uint64_t>(vm.handoffs)) close_handoff(h);
  ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, vm.listener.get(), nullptr);
  std::error_code ec;
  fs::remove(vm.spec.socket, ec);
  vms.erase(it);
}

void GatewayServer::State::expire() {
  const auto now = Clock::now();
  std::vector<uint64_t> late;
  for (const auto& [id, at] : deadlines)
    if (at <= now) late.push_back(id);
  for (uint64_t id : late) {
    close_handoff(id);
    close_conn(id);
  }
}

Result<std::unique_ptr<GatewayServer>> GatewayServer::start(int max_connections_per_vm, Warn warn) {
  if (max_connections_per_vm < 1)
    return fail(ErrorCode::kInvalidArgument, "gateway: at least one connection per VM");
  auto state = std::make_shared<State>();
  state->cap = max_connections_per_vm;
  state->warn = std::move(warn);
  state->epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
  state->wake.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!state->epoll.valid() || !state->wake.valid() ||
      !state->ctl(EPOLL_CTL_ADD, state->wake.get(), kWakeToken, EPOLLIN))
    return fail(ErrorCode::kIo, "gateway: cannot set up its event loop: " + errno_text());
  raise_descriptor_limit();
  State* s = state.get();
  s->thread = std::thread([s] { s->run(); });
  return std::unique_ptr<GatewayServer>(new GatewayServer(std::move(state)));
}

GatewayServer::~GatewayServer() {
  state_->stopping = true;
  const uint64_t one = 1;
  (void)!::write(state_->wake.get(), &one, sizeof one);
  state_->thread.join();
  std::lock_guard lock(state_->mu);
  std::vector<uint64_t> ids;
  for (const auto& [id, vm] : state_->vms) ids.push_back(id);
  for (uint64_t id : ids) state_->remove_vm(id);
}

int GatewayServer::max_connections_per_vm() const { return state_->cap; }

Result<std::unique_ptr<GatewayServer::Vm>> GatewayServer::add_vm(const GatewayVmSpec& spec) {
  auto listener = listen_unix(spec.socket, spec.vmm_uid);
  if (!listener) return fail(listener.error());
  std::lock_guard lock(state_->mu);
  const uint64_t id = state_->next_id++;
  if (!state_->ctl(EPOLL_CTL_ADD, listener->get(), token(id, kListener), EPOLLIN)) {
    std::error_code ec;
    fs::remove(spec.socket, ec);
    return fail(ErrorCode::kIo, "gateway socket " + spec.socket.string() + ": " + errno_text());
  }
  state_->vms.emplace(id, VmEntry{.spec = spec, .listener = std::move(*listener)});
  return std::make_unique<Vm>(state_, id);
}

GatewayServer::Vm::~Vm() {
  std::lock_guard lock(state_->mu);
  state_->remove_vm(id_);
}

void GatewayServer::Vm::expose(int port) {
  std::lock_guard lock(state_->mu);
  if (auto it = state_->vms.find(id_); it != state_->vms.end()) it->second.exposed.insert(port);
}

size_t GatewayServer::Vm::connections() const {
  std::lock_guard lock(state_->mu);
  auto it = state_->vms.find(id_);
  return it == state_->vms.end() ? 0 : it->second.conns.size();
}

}  // namespace nex::microvm
