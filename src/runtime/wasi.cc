#include "runtime/wasi.h"

#include <js/ArrayBuffer.h>
#include <js/Conversions.h>
#include <jsfriendapi.h>
#include <sys/random.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

namespace nex::runtime::wasi {
namespace {

thread_local Invocation* t_current = nullptr;

// errno values of WASI preview1.
constexpr int32_t kSuccess = 0;
constexpr int32_t kBadf = 8;
constexpr int32_t kFault = 21;
constexpr int32_t kInval = 28;
constexpr int32_t kNosys = 52;
constexpr int32_t kNotsup = 58;
constexpr int32_t kSpipe = 70;
constexpr int32_t kNotcapable = 76;

// The instance's linear memory, valid until the next allocation in the engine.
struct Memory : MemoryBytes {
  bool fits(uint64_t offset, uint64_t len) const {
    return offset <= length && len <= length - offset;
  }
  uint32_t u32(uint64_t at) const {
    uint32_t v;
    std::memcpy(&v, data + at, 4);
    return v;
  }
  void put_u32(uint64_t at, uint32_t v) { std::memcpy(data + at, &v, 4); }
  void put_u64(uint64_t at, uint64_t v) { std::memcpy(data + at, &v, 8); }
};

// Calls `body(Memory&)` with the current memory; returns EFAULT if there is none.
template <typename F>
int32_t with_memory(JSContext* cx, Invocation& inv, F&& body) {
  if (!inv.memory || !*inv.memory) return kFault;
  Memory m{memory_bytes(cx, *inv.memory)};
  if (!m.data) return kFault;
  return body(m);
}

uint32_t arg_u32(const JS::CallArgs& args, unsigned i) {
  if (i >= args.length()) return 0;
  const JS::Value v = args[i];
  if (v.isInt32()) return static_cast<uint32_t>(v.toInt32());
  if (v.isDouble()) return static_cast<uint32_t>(static_cast<int64_t>(v.toDouble()));
  return 0;
}

bool ret(const JS::CallArgs& args, int32_t errno_value) {
  args.rval().setInt32(errno_value);
  return true;
}

// Writes `list` as C strings (pointers at `ptrs`, bytes at `buf`).
int32_t put_strings(Memory& m, const std::vector<std::string>& list, uint32_t ptrs, uint32_t buf) {
  uint64_t at = buf;
  for (size_t i = 0; i < list.size(); ++i) {
    const uint64_t len = list[i].size() + 1;
    if (!m.fits(ptrs + 4 * i, 4) || !m.fits(at, len)) return kFault;
    m.put_u32(ptrs + 4 * i, static_cast<uint32_t>(at));
    std::memcpy(m.data + at, list[i].c_str(), len);
    at += len;
  }
  return kSuccess;
}

int32_t put_sizes(Memory& m, const std::vector<std::string>& list, uint32_t count_ptr,
                  uint32_t size_ptr) {
  if (!m.fits(count_ptr, 4) || !m.fits(size_ptr, 4)) return kFault;
  size_t bytes = 0;
  for (const auto& s : list) bytes += s.size() + 1;
  m.put_u32(count_ptr, static_cast<uint32_t>(list.size()));
  m.put_u32(size_ptr, static_cast<uint32_t>(bytes));
  return kSuccess;
}

#define WASI_FN(name)                                      \
  bool name(JSContext* cx, unsigned argc, JS::Value* vp) { \
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);      \
    Invocation* inv = t_current;                           \
    if (!inv) return ret(args, kNosys);                    \
    return ret(args, name##_impl(cx, args, *inv));         \
  }

int32_t args_sizes_get_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  return with_memory(
      cx, inv, [&](Memory& m) { return put_sizes(m, inv.args, arg_u32(a, 0), arg_u32(a, 1)); });
}
int32_t args_get_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  return with_memory(
      cx, inv, [&](Memory& m) { return put_strings(m, inv.args, arg_u32(a, 0), arg_u32(a, 1)); });
}
int32_t environ_sizes_get_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  return with_memory(
      cx, inv, [&](Memory& m) { return put_sizes(m, inv.environ, arg_u32(a, 0), arg_u32(a, 1)); });
}
int32_t environ_get_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  return with_memory(cx, inv, [&](Memory& m) {
    return put_strings(m, inv.environ, arg_u32(a, 0), arg_u32(a, 1));
  });
}

clockid_t host_clock(uint32_t id) {
  switch (id) {
    case 0:
      return CLOCK_REALTIME;
    case 1:
      return CLOCK_MONOTONIC;
    case 2:
      return CLOCK_PROCESS_CPUTIME_ID;
    default:
      return CLOCK_THREAD_CPUTIME_ID;
  }
}

// Reads WASI clock argument 0 with `read` (clock_getres or clock_gettime) and stores the
// nanoseconds at the guest address in argument `out`.
int32_t put_clock(JSContext* cx, const JS::CallArgs& a, Invocation& inv,
                  int (*read)(clockid_t, timespec*), unsigned out) {
  if (arg_u32(a, 0) > 3) return kInval;
  timespec ts{};
  read(host_clock(arg_u32(a, 0)), &ts);
  return with_memory(cx, inv, [&](Memory& m) {
    if (!m.fits(arg_u32(a, out), 8)) return kFault;
    m.put_u64(arg_u32(a, out),
              static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec));
    return kSuccess;
  });
}

int32_t clock_res_get_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  return put_clock(cx, a, inv, clock_getres, 1);
}

int32_t clock_time_get_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  return put_clock(cx, a, inv, clock_gettime, 2);  // argument 1 is the precision, unused
}

int32_t random_get_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  return with_memory(cx, inv, [&](Memory& m) {
    const uint32_t buf = arg_u32(a, 0), len = arg_u32(a, 1);
    if (!m.fits(buf, len)) return kFault;
    for (uint32_t done = 0; done < len;) {
      const ssize_t n = getrandom(m.data + buf + done, len - done, 0);
      if (n <= 0) return kInval;
      done += static_cast<uint32_t>(n);
    }
    return kSuccess;
  });
}

void emit_stderr(Invocation& inv, std::string_view bytes) {
  inv.stderr_pending.append(bytes);
  size_t nl;
  while ((nl = inv.stderr_pending.find('\n')) != std::string::npos) {
    if (inv.stderr_line) inv.stderr_line(std::string_view(inv.stderr_pending).substr(0, nl));
    inv.stderr_pending.erase(0, nl + 1);
  }
}

// fd_write's and fd_read's iovec walk: args 1-3 are the iovec array, its length and where the
// byte count goes. `each(data, len)` handles one buffer and returns the bytes it took; fewer than
// `len` ends the walk (end of input).
template <typename F>
int32_t each_iovec(Memory& m, const JS::CallArgs& a, F&& each) {
  const uint32_t iovs = arg_u32(a, 1), count = arg_u32(a, 2), total_ptr = arg_u32(a, 3);
  uint64_t total = 0;
  for (uint32_t i = 0; i < count; ++i) {
    if (!m.fits(iovs + 8ull * i, 8)) return kFault;
    const uint32_t buf = m.u32(iovs + 8ull * i), len = m.u32(iovs + 8ull * i + 4);
    if (!m.fits(buf, len)) return kFault;
    const uint32_t n = each(m.data + buf, len);
    total += n;
    if (n < len) break;
  }
  if (!m.fits(total_ptr, 4)) return kFault;
  m.put_u32(total_ptr, static_cast<uint32_t>(total));
  return kSuccess;
}

int32_t fd_write_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  const uint32_t fd = arg_u32(a, 0);
  if (fd != 1 && fd != 2) return kBadf;
  return with_memory(cx, inv, [&](Memory& m) {
    return each_iovec(m, a, [&](uint8_t* data, uint32_t len) {
      const std::string_view bytes(reinterpret_cast<const char*>(data), len);
      if (fd == 1) {
        inv.stdout_data.append(bytes);
      } else {
        emit_stderr(inv, bytes);
      }
      return len;
    });
  });
}

int32_t fd_read_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  if (arg_u32(a, 0) != 0) return kBadf;
  return with_memory(cx, inv, [&](Memory& m) {
    return each_iovec(m, a, [&](uint8_t* data, uint32_t len) {
      const size_t n = std::min<size_t>(len, inv.stdin_data.size() - inv.stdin_offset);
      std::memcpy(data, inv.stdin_data.data() + inv.stdin_offset, n);
      inv.stdin_offset += n;
      return static_cast<uint32_t>(n);
    });
  });
}

int32_t fd_fdstat_get_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  if (arg_u32(a, 0) > 2) return kBadf;
  return with_memory(cx, inv, [&](Memory& m) {
    const uint32_t at = arg_u32(a, 1);
    if (!m.fits(at, 24)) return kFault;
    std::memset(m.data + at, 0, 24);
    m.data[at] = 2;  // character device
    const uint64_t rights = arg_u32(a, 0) == 0 ? 0x2 /* fd_read */ : 0x40 /* fd_write */;
    m.put_u64(at + 8, rights);
    return kSuccess;
  });
}

int32_t fd_close_impl(JSContext*, const JS::CallArgs& a, Invocation&) {
  return arg_u32(a, 0) <= 2 ? kSuccess : kBadf;
}
int32_t fd_seek_impl(JSContext*, const JS::CallArgs& a, Invocation&) {
  return arg_u32(a, 0) <= 2 ? kSpipe : kBadf;
}
int32_t fd_prestat_get_impl(JSContext*, const JS::CallArgs&, Invocation&) { return kBadf; }
int32_t fd_prestat_dir_name_impl(JSContext*, const JS::CallArgs&, Invocation&) { return kBadf; }
int32_t sched_yield_impl(JSContext*, const JS::CallArgs&, Invocation&) {
  std::this_thread::yield();
  return kSuccess;
}

// Clock subscriptions only: sleeps until the earliest one (interruptibly), then reports every
// clock subscription as fired; others get ENOTSUP events.
int32_t poll_oneoff_impl(JSContext* cx, const JS::CallArgs& a, Invocation& inv) {
  const uint32_t in = arg_u32(a, 0), out = arg_u32(a, 1), n = arg_u32(a, 2),
                 nevents_ptr = arg_u32(a, 3);
  if (n == 0) return kInval;
  uint64_t wait_ns = UINT64_MAX;
  int32_t status = with_memory(cx, inv, [&](Memory& m) {
    if (!m.fits(in, 48ull * n)) return kFault;
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t s = in + 48ull * i;
      if (m.data[s + 8] != 0) continue;  // not a clock
      uint32_t clock_id;
      uint64_t timeout;
      uint16_t flags;
      std::memcpy(&clock_id, m.data + s + 16, 4);
      std::memcpy(&timeout, m.data + s + 24, 8);
      std::memcpy(&flags, m.data + s + 40, 2);
      if (flags & 1) {  // absolute
        timespec ts{};
        clock_gettime(host_clock(clock_id), &ts);
        const uint64_t now =
            static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
        timeout = timeout > now ? timeout - now : 0;
      }
      wait_ns = std::min(wait_ns, timeout);
    }
    return kSuccess;
  });
  if (status != kSuccess) return status;
  if (wait_ns != UINT64_MAX) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(wait_ns);
    while (std::chrono::steady_clock::now() < until &&
           !(inv.stop && inv.stop->load() != StopReason::kRunOn)) {
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(
          until - std::chrono::steady_clock::now(), std::chrono::milliseconds(10)));
    }
  }
  return with_memory(cx, inv, [&](Memory& m) {
    if (!m.fits(in, 48ull * n) || !m.fits(out, 32ull * n) || !m.fits(nevents_ptr, 4)) return kFault;
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t s = in + 48ull * i, e = out + 32ull * i;
      std::memset(m.data + e, 0, 32);
      std::memcpy(m.data + e, m.data + s, 8);  // userdata
      const uint8_t tag = m.data[s + 8];
      const uint16_t error = tag == 0 ? 0 : static_cast<uint16_t>(kNotsup);
      std::memcpy(m.data + e + 8, &error, 2);
      m.data[e + 10] = tag;
    }
    m.put_u32(nevents_ptr, n);
    return kSuccess;
  });
}

WASI_FN(args_sizes_get)
WASI_FN(args_get)
WASI_FN(environ_sizes_get)
WASI_FN(environ_get)
WASI_FN(clock_res_get)
WASI_FN(clock_time_get)
WASI_FN(random_get)
WASI_FN(fd_write)
WASI_FN(fd_read)
WASI_FN(fd_fdstat_get)
WASI_FN(fd_close)
WASI_FN(fd_seek)
WASI_FN(fd_prestat_get)
WASI_FN(fd_prestat_dir_name)
WASI_FN(sched_yield)
WASI_FN(poll_oneoff)

// proc_exit ends the instance: an uncatchable stop, with the code kept for the runner.
bool proc_exit(JSContext*, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  if (t_current) t_current->exit_code = static_cast<int>(arg_u32(args, 0));
  return false;
}

// Everything else: the errno in the function's reserved slot.
bool unsupported(JSContext*, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  return ret(args, js::GetFunctionNativeReserved(&args.callee(), 0).toInt32());
}

struct Native {
  const char* name;
  JSNative fn;
  unsigned nargs;
};

constexpr Native kNatives[] = {
    {"args_get", args_get, 2},
    {"args_sizes_get", args_sizes_get, 2},
    {"environ_get", environ_get, 2},
    {"environ_sizes_get", environ_sizes_get, 2},
    {"clock_res_get", clock_res_get, 2},
    {"clock_time_get", clock_time_get, 3},
    {"random_get", random_get, 2},
    {"fd_write", fd_write, 4},
    {"fd_read", fd_read, 4},
    {"fd_fdstat_get", fd_fdstat_get, 2},
    {"fd_close", fd_close, 1},
    {"fd_seek", fd_seek, 4},
    {"fd_prestat_get", fd_prestat_get, 2},
    {"fd_prestat_dir_name", fd_prestat_dir_name, 3},
    {"sched_yield", sched_yield, 0},
    {"poll_oneoff", poll_oneoff, 4},
    {"proc_exit", proc_exit, 1},
};

struct Unsupported {
  const char* name;
  int32_t errno_value;
};

constexpr Unsupported kUnsupported[] = {
    {"fd_advise", kBadf},
    {"fd_allocate", kBadf},
    {"fd_datasync", kBadf},
    {"fd_fdstat_set_flags", kBadf},
    {"fd_fdstat_set_rights", kBadf},
    {"fd_filestat_get", kBadf},
    {"fd_filestat_set_size", kBadf},
    {"fd_filestat_set_times", kBadf},
    {"fd_pread", kBadf},
    {"fd_pwrite", kBadf},
    {"fd_readdir", kBadf},
    {"fd_renumber", kBadf},
    {"fd_sync", kBadf},
    {"fd_tell", kBadf},
    {"path_create_directory", kNotcapable},
    {"path_filestat_get", kNotcapable},
    {"path_filestat_set_times", kNotcapable},
    {"path_link", kNotcapable},
    {"path_open", kNotcapable},
    {"path_readlink", kNotcapable},
    {"path_remove_directory", kNotcapable},
    {"path_rename", kNotcapable},
    {"path_symlink", kNotcapable},
    {"path_unlink_file", kNotcapable},
    {"proc_raise", kNosys},
    {"sock_accept", kNotcapable},
    {"sock_recv", kNotcapable},
    {"sock_send", kNotcapable},
    {"sock_shutdown", kNotcapable},
};

}  // namespace

ActiveInvocation::ActiveInvocation(Invocation& inv) { t_current = &inv; }
ActiveInvocation::~ActiveInvocation() { t_current = nullptr; }

JSObject* make_imports(JSContext* cx) {
  JS::RootedObject obj(cx, JS_NewPlainObject(cx));
  if (!obj) return nullptr;
  for (const Native& n : kNatives) {
    if (!JS_DefineFunction(cx, obj, n.name, n.fn, n.nargs, JSPROP_ENUMERATE)) return nullptr;
  }
  for (const Unsupported& u : kUnsupported) {
    JSFunction* f =
        js::DefineFunctionWithReserved(cx, obj, u.name, unsupported, 0, JSPROP_ENUMERATE);
    if (!f) return nullptr;
    js::SetFunctionNativeReserved(JS_GetFunctionObject(f), 0, JS::Int32Value(u.errno_value));
  }
  return obj;
}

MemoryBytes memory_bytes(JSContext* cx, JS::HandleObject memory) {
  JS::RootedValue buffer(cx);
  if (!JS_GetProperty(cx, memory, "buffer", &buffer) || !buffer.isObject()) {
    JS_ClearPendingException(cx);
    return {};
  }
  MemoryBytes bytes;
  bool shared = false;
  JS::GetArrayBufferLengthAndData(&buffer.toObject(), &bytes.length, &shared, &bytes.data);
  return bytes;
}

Invocation* current() { return t_current; }

bool read_memory(JSContext* cx, Invocation& inv, uint32_t ptr, uint32_t len, std::string& out) {
  return with_memory(cx, inv, [&](Memory& m) {
           if (!m.fits(ptr, len)) return kFault;
           out.assign(reinterpret_cast<const char*>(m.data + ptr), len);
           return kSuccess;
         }) == kSuccess;
}

bool write_memory(JSContext* cx, Invocation& inv, uint32_t ptr, std::string_view data) {
  return with_memory(cx, inv, [&](Memory& m) {
           if (!m.fits(ptr, data.size())) return kFault;
           std::memcpy(m.data + ptr, data.data(), data.size());
           return kSuccess;
         }) == kSuccess;
}

void finish(Invocation& inv) {
  if (!inv.stderr_pending.empty() && inv.stderr_line) inv.stderr_line(inv.stderr_pending);
  inv.stderr_pending.clear();
}

}  // namespace nex::runtime::wasi
