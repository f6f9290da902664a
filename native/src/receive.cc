// receive: writes what a stream socket sends into a file, on a thread of its own.
//
// Why: an FTP upload handled in JS reads the socket in 64 KiB chunks on the
// event loop, copies them into a batch buffer and hands the batch to a libuv
// thread, which copies it into the page cache on the other core. Measured on a
// 2-vCPU VM, that hand-off alone made a C receiver twice as slow as reading and
// writing each chunk on one thread (the chunk is still in that core's cache when
// it is written), which is what vsftpd does. Here one thread per upload reads a
// chunk and writes it at once, and JS only hears about progress and the end.
//
// The thread never blocks where it cannot be woken: the socket is read with
// MSG_DONTWAIT, and while it has nothing to read the thread waits in poll() on
// the socket and on an eventfd that `cancel` signals. It works on duplicates of
// both fds, so a JS close of either one can never make it touch a reused fd
// number; the caller still waits for the final callback before it closes the
// file, so no byte is written after the upload was given up. A libuv thread is
// not used because a slow client would hold it for the whole upload.

#include "receive.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "errno_name.h"

namespace receive {
namespace {

// One read: large enough for few syscalls, small enough to stay in the core's cache.
constexpr size_t kChunkSize = 128 * 1024;

// Progress is reported at least every this many bytes, and whenever the socket runs dry.
constexpr uint64_t kProgressEvery = 4 * 1024 * 1024;

// The thread's stack: its frames hold a few pointers; the chunk buffer is on the heap.
constexpr size_t kStackSize = 256 * 1024;

// Largest integer a JS number holds exactly.
constexpr double kMaxSafeInteger = 9007199254740991.0;

// What one callback carries to JS: progress, or the end with an optional failure.
struct Report {
  uint64_t bytes = 0;
  bool done = false;
  int err = 0;               // 0: the peer ended the stream (or, for progress, nothing)
  const char* syscall = "";  // the call that failed: "recv"/"poll" (socket side) or "pwrite" (file side)
};

// Shared by the JS `cancel` function and the thread.
struct State {
  int socket = -1;
  int file = -1;
  int wake = -1;  // closed under `wakeLock`: `cancel` may run after the transfer ended
  std::mutex wakeLock;
  off_t offset = 0;
  std::atomic<bool> cancelled{false};
  Napi::ThreadSafeFunction callback;

  // Every fd goes as soon as the transfer is over, before JS hears of it: the
  // duplicates would keep the connection open and the file's last close pending,
  // and none may wait for the garbage collector to take the `cancel` function.
  void CloseAll() {
    if (socket >= 0) close(std::exchange(socket, -1));
    if (file >= 0) close(std::exchange(file, -1));
    std::lock_guard<std::mutex> guard(wakeLock);
    if (wake >= 0) close(std::exchange(wake, -1));
  }

  // Its result is not needed: one write cannot overflow the counter, and the
  // thread checks `cancelled` before every wait and after every wake-up anyway.
  void Wake() {
    std::lock_guard<std::mutex> guard(wakeLock);
    const uint64_t one = 1;
    if (wake >= 0) static_cast<void>(!write(wake, &one, sizeof one));
  }

  ~State() { CloseAll(); }
};

void CallJs(Napi::Env env, Napi::Function callback, Report* report) {
  std::unique_ptr<Report> owned(report);
  if (env == nullptr || callback.IsEmpty()) return;
  if (!owned->done) {
    callback.Call({Napi::Number::New(env, static_cast<double>(owned->bytes)), Napi::Boolean::New(env, false)});
    return;
  }
  if (owned->err == 0) {
    callback.Call({Napi::Number::New(env, static_cast<double>(owned->bytes)), Napi::Boolean::New(env, true)});
    return;
  }
  callback.Call({Napi::Number::New(env, static_cast<double>(owned->bytes)), Napi::Boolean::New(env, true),
                 Napi::String::New(env, errno_name::Code(owned->err)), Napi::String::New(env, owned->syscall)});
}

void Post(State& state, const Report& report) {
  state.callback.NonBlockingCall(new Report(report), CallJs);
}

// Writes all of `length` bytes at `offset` (a short write continues where it stopped).
int WriteAll(int fd, const char* data, size_t length, off_t offset) {
  while (length > 0) {
    const ssize_t written = pwrite(fd, data, length, offset);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += written;
    length -= static_cast<size_t>(written);
    offset += written;
  }
  return 0;
}

// Waits until the socket is readable or `cancel` was called; false when cancelled.
bool AwaitReadable(State& state, int& err) {
  struct pollfd fds[2] = {{state.socket, POLLIN, 0}, {state.wake, POLLIN, 0}};
  while (true) {
    if (state.cancelled.load()) return false;
    if (poll(fds, 2, -1) >= 0) break;
    if (errno != EINTR) {
      err = errno;
      return true;
    }
  }
  return !state.cancelled.load();
}

Report Transfer(State& state) {
  std::unique_ptr<char[]> buffer(new char[kChunkSize]);
  Report report;
  uint64_t reported = 0;
  while (true) {
    if (state.cancelled.load()) return Report{report.bytes, true, ECANCELED, "recv"};
    const ssize_t got = recv(state.socket, buffer.get(), kChunkSize, MSG_DONTWAIT);
    if (got > 0) {
      const int err = WriteAll(state.file, buffer.get(), static_cast<size_t>(got), state.offset);
      if (err != 0) return Report{report.bytes, true, err, "pwrite"};
      state.offset += got;
      report.bytes += static_cast<uint64_t>(got);
      if (report.bytes - reported >= kProgressEvery) {
        Post(state, report);
        reported = report.bytes;
      }
      continue;
    }
    if (got == 0) return Report{report.bytes, true, 0, ""};
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Report{report.bytes, true, errno, "recv"};
    // Dry: what arrived so far counts as activity now, not after the next burst.
    if (report.bytes > reported) {
      Post(state, report);
      reported = report.bytes;
    }
    int pollErr = 0;
    if (!AwaitReadable(state, pollErr)) return Report{report.bytes, true, ECANCELED, "recv"};
    if (pollErr != 0) return Report{report.bytes, true, pollErr, "poll"};
  }
}

void* Run(void* arg) {
  std::shared_ptr<State> state(std::move(*static_cast<std::shared_ptr<State>*>(arg)));
  delete static_cast<std::shared_ptr<State>*>(arg);
  const Report report = Transfer(*state);
  state->CloseAll();
  Post(*state, report);
  state->callback.Release();
  return nullptr;
}

// The `cancel` function handed to JS: wakes the thread, which then reports ECANCELED.
Napi::Value Cancel(const Napi::CallbackInfo& info, const std::shared_ptr<State>& state) {
  if (!state->cancelled.exchange(true)) state->Wake();
  return info.Env().Undefined();
}

bool IsDescriptor(const Napi::Value& value) {
  if (!value.IsNumber()) return false;
  const double number = value.As<Napi::Number>().DoubleValue();
  return number >= 0 && number <= 2147483647.0 && std::trunc(number) == number;
}

}  // namespace

Napi::Value Receive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool valid = info.Length() == 4 && IsDescriptor(info[0]) && IsDescriptor(info[1]) && info[2].IsNumber() &&
                     info[3].IsFunction();
  const double offset = valid ? info[2].As<Napi::Number>().DoubleValue() : -1;
  if (!valid || !(offset >= 0 && offset <= kMaxSafeInteger) || std::trunc(offset) != offset) {
    Napi::TypeError::New(env, "receive(socketFd, fileFd, offset, callback): invalid arguments")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }

  auto state = std::make_shared<State>();
  state->offset = static_cast<off_t>(offset);
  state->callback = Napi::ThreadSafeFunction::New(env, info[3].As<Napi::Function>(), "portcullis-receive", 0, 1);
  Napi::Function cancel =
      Napi::Function::New(env, [state](const Napi::CallbackInfo& call) { return Cancel(call, state); }, "cancel");

  // Failures before the thread runs are reported through the callback too, so a caller has one path.
  const auto failNow = [&](int err, const char* syscall) {
    state->CloseAll();
    Post(*state, Report{0, true, err, syscall});
    state->callback.Release();
    return cancel;
  };
  struct stat st {};
  const int socketFd = info[0].As<Napi::Number>().Int32Value();
  if (fstat(socketFd, &st) < 0) return failNow(errno, "fstat");
  if (!S_ISSOCK(st.st_mode)) return failNow(ENOTSOCK, "fstat");
  state->socket = fcntl(socketFd, F_DUPFD_CLOEXEC, 0);
  if (state->socket < 0) return failNow(errno, "dup");
  state->file = fcntl(info[1].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
  if (state->file < 0) return failNow(errno, "dup");
  state->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (state->wake < 0) return failNow(errno, "eventfd");

  pthread_t thread;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  // The loop needs little stack; the default (8 MiB of address space) would add
  // up with many uploads at once.
  pthread_attr_setstacksize(&attributes, kStackSize);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  auto* handoff = new std::shared_ptr<State>(state);
  const int err = pthread_create(&thread, &attributes, Run, handoff);
  pthread_attr_destroy(&attributes);
  if (err != 0) {
    delete handoff;
    return failNow(err, "pthread_create");
  }
  return cancel;
}

}  // namespace receive
