// jail: the syscall layer under Portcullis' file system jail.
//
// The typed JS surface is native/jail.d.ts. This addon holds no policy: it opens
// a root directory once and then resolves every client path relative to that
// root fd, letting the kernel enforce containment instead of string checks.
//
// Security model
//
// * Every lookup is openat2(root, path, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS).
//   RESOLVE_IN_ROOT makes ".." stop at the root and reads an absolute path as
//   relative to it, atomically during the walk, so a concurrent rename cannot
//   move the walk outside. RESOLVE_NO_SYMLINKS refuses a symlink in any
//   component with ELOOP, including a final one and magic links under /proc.
//   A client can therefore neither escape nor be redirected by a link that
//   somebody planted or swapped in, and no string cleaning is relied on.
// * Calls that change a directory open the parent that way and then act on a
//   single final name with the *at call. The name is never ".", ".." or empty
//   (checked before any syscall) and *at calls do not follow a final symlink
//   when they create, remove or rename one, so one name cannot leave the parent.
// * chmod, chown, utimes and link act on the inode a path resolved to, not on
//   a path that could be swapped afterwards: they resolve it to an O_PATH fd,
//   refuse a final symlink (ELOOP; ENOTREG for link) and then act on that fd.
//   chown uses AT_EMPTY_PATH; the others go through the fd's /proc/self/fd/N
//   magic link, which names exactly that inode, because fchmod and futimens
//   refuse O_PATH fds, fchmodat cannot refuse a final symlink, and
//   linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH. This requires /proc.
// * open adds O_NONBLOCK so that a FIFO or device planted next to the user's
//   files out of band cannot stall a libuv thread in open(); after fstat only a
//   regular file is kept (ENOTREG otherwise) and O_NONBLOCK is cleared again.
// * Every fd is O_CLOEXEC and every temporary fd is owned by an Fd guard, so no
//   error path leaks one. setuid, setgid and sticky bits are always stripped.
//
// Threading: arguments are validated on the JS thread (bad input rejects the
// Promise with EINVAL); the syscalls run in a Napi::AsyncWorker on the libuv
// thread pool; the result or error object is built back on the JS thread. The
// one exception is `receive` (receive.cc), which writes an upload from a socket
// on a thread of its own.
// Errors carry `code` (errno name), `errno` and `syscall`, never a path.

#include <napi.h>

#include "errno_name.h"
#include "receive.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace {

// Not a kernel errno: the refusal of a file that is not a regular file. It is
// reported as code "ENOTREG" without an `errno` property.
constexpr int kNotRegular = -1;

// Permission bits only: setuid, setgid and sticky never reach the kernel.
constexpr mode_t kPermissionBits = 0777;

// getdents64 buffer; large enough for hundreds of entries per syscall.
constexpr size_t kDirBufferSize = 32 * 1024;

// Largest millisecond value a JS Date can hold; keeps the timespec conversion defined.
constexpr double kMaxTimeMs = 8.64e15;

// Largest integer a JS number holds exactly.
constexpr double kMaxSafeInteger = 9007199254740991.0;

// The outcome of the work on the thread pool: err == 0 is success.
struct Failure {
  int err = 0;
  const char* syscall = "";
  explicit operator bool() const { return err != 0; }
};

// Captures errno right after the failing call.
Failure Fail(const char* syscall) { return Failure{errno, syscall}; }

Failure Check(long result, const char* syscall) {
  return result < 0 ? Fail(syscall) : Failure{};
}

// Owns one fd and closes it on every path out of a scope.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.Release()) {}
  Fd& operator=(Fd&& other) noexcept {
    Reset(other.Release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(-1); }

  int Get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd) {
    if (fd_ >= 0) {
      const int saved = errno;
      close(fd_);
      errno = saved;
    }
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A path split at its last "/": the parent to open, and the one name to act on.
struct Target {
  std::string parent;
  std::string name;
};

struct DirEntry {
  std::string name;
  struct stat st;
};

struct Empty {};

// A file's attributes read just before its close; `read` is false when fstat failed.
struct FinalStat {
  bool read = false;
  struct stat st {};
};

// ---------------------------------------------------------------------------
// Syscalls. Everything in this namespace runs on the libuv thread pool.

namespace ops {

// The only way a path below the root is resolved (see the header).
Failure OpenBeneath(int root, const std::string& path, int flags, mode_t mode, Fd& out) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = mode;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS;
  const char* relative = path.empty() ? "." : path.c_str();
  const long fd = syscall(SYS_openat2, root, relative, &how, sizeof how);
  if (fd < 0) return Fail("openat2");
  out.Reset(static_cast<int>(fd));
  return {};
}

Failure OpenParent(int root, const Target& target, Fd& out) {
  return OpenBeneath(root, target.parent, O_PATH | O_DIRECTORY, 0, out);
}

// The /proc magic link of an fd: a name for exactly the inode the fd holds.
std::string ProcFdPath(const Fd& fd) { return "/proc/self/fd/" + std::to_string(fd.Get()); }

Failure Fstat(int fd, struct stat& st) { return Check(fstat(fd, &st), "fstat"); }

Failure StatBeneath(int root, const std::string& path, int flags, struct stat& st) {
  Fd fd;
  if (Failure f = OpenBeneath(root, path, O_PATH | flags, 0, fd)) return f;
  return Fstat(fd.Get(), st);
}

Failure Probe() {
  Fd host(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (host.Get() < 0) return Fail("open");
  Fd self;
  return OpenBeneath(host.Get(), "", O_PATH, 0, self);
}

// O_DIRECTORY | O_NOFOLLOW would report a final symlink as ENOTDIR, so the type
// is checked with fstat instead, which also lets a symlink be reported as ELOOP.
Failure OpenRoot(const std::string& hostPath, Fd& out) {
  Fd fd(open(hostPath.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (fd.Get() < 0) return Fail("open");
  struct stat st;
  if (Failure f = Fstat(fd.Get(), st)) return f;
  if (S_ISLNK(st.st_mode)) return {ELOOP, "open"};
  if (!S_ISDIR(st.st_mode)) return {ENOTDIR, "open"};
  out = std::move(fd);
  return {};
}

// Linux releases the fd even when close reports EINTR; a retry could close an
// fd that another thread has received in the meantime.
Failure Close(int fd) {
  if (close(fd) != 0 && errno != EINTR) return Fail("close");
  return {};
}

// Reads the attributes of an open file, then closes it whatever fstat said: an
// upload's final size and its close cost one thread-pool round trip, not two.
Failure FstatClose(int fd, FinalStat& out) {
  out.read = fstat(fd, &out.st) == 0;
  return Close(fd);
}

// With O_NONBLOCK, a FIFO without a reader (opened for writing), a socket or a
// device without a driver fails inside openat2, before fstat can see it. Those
// are refusals of a non-regular file too, so report them as one.
Failure ClassifyOpenFailure(int root, const std::string& path, Failure failure) {
  if (failure.err != ENXIO && failure.err != ENODEV) return failure;
  struct stat st;
  if (StatBeneath(root, path, 0, st) || S_ISREG(st.st_mode)) return failure;
  return {kNotRegular, "open"};
}

Failure OpenRegular(int root, const std::string& path, int flags, mode_t mode, Fd& out) {
  // openat2 rejects a mode without O_CREAT.
  const mode_t createMode = (flags & O_CREAT) ? mode : 0;
  Fd fd;
  if (Failure f = OpenBeneath(root, path, flags | O_NOCTTY | O_NONBLOCK, createMode, fd)) {
    return ClassifyOpenFailure(root, path, f);
  }
  struct stat st;
  if (Failure f = Fstat(fd.Get(), st)) return f;
  if (S_ISDIR(st.st_mode)) return {EISDIR, "open"};
  if (!S_ISREG(st.st_mode)) return {kNotRegular, "open"};
  // A file opened for writing loses its setuid and setgid bits, as the kernel does
  // for a writer without CAP_FSETID. A server running as root has that capability,
  // so without this a client could overwrite the contents of a setuid file planted
  // in its root by someone else and keep the bit. Done here, in the same worker as
  // the open, so an upload costs one thread-pool round trip less.
  if ((flags & O_ACCMODE) != O_RDONLY && (st.st_mode & (S_ISUID | S_ISGID)) != 0) {
    if (fchmod(fd.Get(), st.st_mode & 01777) != 0) return Fail("fchmod");
  }
  const int status = fcntl(fd.Get(), F_GETFL);
  if (status < 0) return Fail("fcntl");
  if (fcntl(fd.Get(), F_SETFL, status & ~O_NONBLOCK) != 0) return Fail("fcntl");
  out = std::move(fd);
  return {};
}

Failure OpenDir(int root, const std::string& path, Fd& out) {
  return OpenBeneath(root, path, O_RDONLY | O_DIRECTORY, 0, out);
}

// Appends one getdents64 record unless it is "." or "..", or vanished before fstatat.
Failure CollectEntry(int dirFd, const struct dirent64& record, std::vector<DirEntry>& out) {
  const char* name = record.d_name;
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return {};
  DirEntry entry{name, {}};
  if (fstatat(dirFd, name, &entry.st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? Failure{} : Fail("fstatat");
  }
  out.push_back(std::move(entry));
  return {};
}

// After a failure the directory position is unspecified; close the directory.
Failure ReadDir(int dirFd, size_t max, std::vector<DirEntry>& out) {
  std::vector<char> buffer(kDirBufferSize);
  while (out.size() < max) {
    const ssize_t length = getdents64(dirFd, buffer.data(), buffer.size());
    if (length < 0) return Fail("getdents64");
    if (length == 0) return {};
    off64_t consumed = 0;
    for (ssize_t at = 0; at < length;) {
      const auto* record = reinterpret_cast<const struct dirent64*>(buffer.data() + at);
      if (out.size() == max) {
        // getdents64 moved the position past the whole buffer; move it back to
        // just after the last record used so that the next call resumes there.
        return Check(lseek(dirFd, consumed, SEEK_SET), "lseek");
      }
      if (Failure f = CollectEntry(dirFd, *record, out)) return f;
      consumed = record->d_off;
      at += record->d_reclen;
    }
  }
  return {};
}

Failure Mkdir(int root, const Target& target, mode_t mode) {
  Fd parent;
  if (Failure f = OpenParent(root, target, parent)) return f;
  return Check(mkdirat(parent.Get(), target.name.c_str(), mode), "mkdirat");
}

// flags: AT_REMOVEDIR for rmdir, 0 for unlink (which refuses a directory with EISDIR).
Failure Remove(int root, const Target& target, int flags) {
  Fd parent;
  if (Failure f = OpenParent(root, target, parent)) return f;
  return Check(unlinkat(parent.Get(), target.name.c_str(), flags), "unlinkat");
}

Failure Rename(int root, const Target& from, const Target& to, bool noReplace) {
  Fd fromParent;
  Fd toParent;
  if (Failure f = OpenParent(root, from, fromParent)) return f;
  if (Failure f = OpenParent(root, to, toParent)) return f;
  const unsigned flags = noReplace ? RENAME_NOREPLACE : 0;
  return Check(renameat2(fromParent.Get(), from.name.c_str(), toParent.Get(), to.name.c_str(), flags),
               "renameat2");
}

// Only regular files of our own euid: a hard link to someone else's file would
// let the user keep (and possibly write) it after its owner removed it. A final
// symlink is opened itself (O_NOFOLLOW) and refused as not a regular file.
Failure Link(int root, const std::string& from, const Target& to) {
  Fd source;
  if (Failure f = OpenBeneath(root, from, O_PATH | O_NOFOLLOW, 0, source)) return f;
  struct stat st;
  if (Failure f = Fstat(source.Get(), st)) return f;
  if (!S_ISREG(st.st_mode)) return {kNotRegular, "link"};
  if (st.st_uid != geteuid()) return {EPERM, "link"};
  Fd parent;
  if (Failure f = OpenParent(root, to, parent)) return f;
  return Check(linkat(AT_FDCWD, ProcFdPath(source).c_str(), parent.Get(), to.name.c_str(), AT_SYMLINK_FOLLOW),
               "linkat");
}

Failure Chmod(int root, const std::string& path, mode_t mode) {
  Fd fd;
  if (Failure f = OpenBeneath(root, path, O_PATH, 0, fd)) return f;
  return Check(chmod(ProcFdPath(fd).c_str(), mode), "chmod");
}

Failure Truncate(int root, const std::string& path, off_t size) {
  Fd fd;
  if (Failure f = OpenRegular(root, path, O_WRONLY, 0, fd)) return f;
  return Check(ftruncate(fd.Get(), size), "ftruncate");
}

Failure Utimes(int root, const std::string& path, const struct timespec (&times)[2]) {
  Fd fd;
  if (Failure f = OpenBeneath(root, path, O_PATH, 0, fd)) return f;
  return Check(utimensat(AT_FDCWD, ProcFdPath(fd).c_str(), times, 0), "utimensat");
}

Failure Chown(int root, const std::string& path, uid_t uid, gid_t gid) {
  Fd fd;
  if (Failure f = OpenBeneath(root, path, O_PATH, 0, fd)) return f;
  return Check(fchownat(fd.Get(), "", uid, gid, AT_EMPTY_PATH), "fchownat");
}

Failure Statvfs(int root, const std::string& path, struct statvfs& out) {
  Fd fd;
  if (Failure f = OpenBeneath(root, path, O_PATH, 0, fd)) return f;
  return Check(fstatvfs(fd.Get(), &out), "fstatvfs");
}

}  // namespace ops

// ---------------------------------------------------------------------------
// Conversions to JS. These run on the JS thread.

Napi::Value ErrnoError(Napi::Env env, const Failure& failure) {
  const bool notRegular = failure.err == kNotRegular;
  const char* description = notRegular ? "Not a regular file" : errno_name::Description(failure.err);
  const std::string code = notRegular ? "ENOTREG" : errno_name::Code(failure.err);
  const std::string text = description != nullptr ? description : "Unknown error " + std::to_string(failure.err);
  Napi::Error error = Napi::Error::New(env, std::string(failure.syscall) + ": " + text);
  error.Set("code", Napi::String::New(env, code));
  if (!notRegular) error.Set("errno", Napi::Number::New(env, failure.err));
  error.Set("syscall", Napi::String::New(env, failure.syscall));
  return error.Value();
}

double Milliseconds(const struct timespec& time) {
  return static_cast<double>(time.tv_sec) * 1000.0 + static_cast<double>(time.tv_nsec) / 1e6;
}

Napi::Value StatToJs(Napi::Env env, const struct stat& st) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("mode", static_cast<double>(st.st_mode));
  out.Set("size", static_cast<double>(st.st_size));
  out.Set("uid", static_cast<double>(st.st_uid));
  out.Set("gid", static_cast<double>(st.st_gid));
  out.Set("nlink", static_cast<double>(st.st_nlink));
  out.Set("ino", static_cast<double>(st.st_ino));
  out.Set("dev", static_cast<double>(st.st_dev));
  out.Set("atimeMs", Milliseconds(st.st_atim));
  out.Set("mtimeMs", Milliseconds(st.st_mtim));
  out.Set("ctimeMs", Milliseconds(st.st_ctim));
  return out;
}

Napi::Value StatVfsToJs(Napi::Env env, const struct statvfs& st) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("bsize", static_cast<double>(st.f_bsize));
  out.Set("frsize", static_cast<double>(st.f_frsize));
  out.Set("blocks", static_cast<double>(st.f_blocks));
  out.Set("bfree", static_cast<double>(st.f_bfree));
  out.Set("bavail", static_cast<double>(st.f_bavail));
  out.Set("files", static_cast<double>(st.f_files));
  out.Set("ffree", static_cast<double>(st.f_ffree));
  out.Set("favail", static_cast<double>(st.f_favail));
  out.Set("fsid", static_cast<double>(st.f_fsid));
  out.Set("flag", static_cast<double>(st.f_flag));
  out.Set("namemax", static_cast<double>(st.f_namemax));
  return out;
}

// Names are decoded as UTF-8; bytes that are not valid UTF-8 become U+FFFD, so
// such a name can be listed but not opened again by the name that is returned.
Napi::Value DirEntriesToJs(Napi::Env env, const std::vector<DirEntry>& entries) {
  Napi::Array out = Napi::Array::New(env, entries.size());
  for (size_t i = 0; i < entries.size(); i++) {
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("name", Napi::String::New(env, entries[i].name));
    entry.Set("stat", StatToJs(env, entries[i].st));
    out.Set(static_cast<uint32_t>(i), entry);
  }
  return out;
}

// Hands the fd over to JS; until then the Fd guard owns it, so a result that
// never reaches JS is still closed.
Napi::Value FdToJs(Napi::Env env, Fd& fd) { return Napi::Number::New(env, fd.Release()); }

Napi::Value EmptyToJs(Napi::Env env, const Empty&) { return env.Undefined(); }

Napi::Value FinalStatToJs(Napi::Env env, const FinalStat& final) {
  return final.read ? StatToJs(env, final.st) : env.Null();
}

// ---------------------------------------------------------------------------
// The bridge: a Promise settled by work on the thread pool.

template <typename T>
class Job final : public Napi::AsyncWorker {
 public:
  using Work = std::function<Failure(T&)>;
  using ToJs = std::function<Napi::Value(Napi::Env, T&)>;

  Job(Napi::Env env, const char* name, Work work, ToJs toJs)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        toJs_(std::move(toJs)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { failure_ = work_(result_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (failure_) {
      deferred_.Reject(ErrnoError(env, failure_));
      return;
    }
    Napi::Value value = toJs_(env, result_);
    if (env.IsExceptionPending()) {
      deferred_.Reject(env.GetAndClearPendingException().Value());
      return;
    }
    deferred_.Resolve(value);
  }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  ToJs toJs_;
  T result_{};
  Failure failure_;
};

// Reads and validates the arguments of one call on the JS thread. The first
// bad argument marks the call invalid; it then settles as a rejected Promise
// with EINVAL instead of reaching the thread pool.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* op) : info_(info), op_(op) {}

  int Descriptor(size_t i) { return static_cast<int>(Integer(i, 0, 2147483647.0)); }

  uint32_t Uint32(size_t i) { return static_cast<uint32_t>(Integer(i, 0, 4294967295.0)); }

  // A mode with only the permission bits kept (file type bits from clients are ignored).
  mode_t Mode(size_t i) { return static_cast<mode_t>(Uint32(i)) & kPermissionBits; }

  off_t Size(size_t i) { return static_cast<off_t>(Integer(i, 0, kMaxSafeInteger)); }

  size_t Count(size_t i) { return static_cast<size_t>(Integer(i, 1, 4294967295.0)); }

  // A user or group id; -1 leaves it unchanged, as for chown(2).
  uint32_t Id(size_t i) {
    const double id = Integer(i, -1, 4294967294.0);
    return id < 0 ? static_cast<uint32_t>(-1) : static_cast<uint32_t>(id);
  }

  bool Bool(size_t i) {
    if (!info_[i].IsBoolean()) return Invalid(false);
    return info_[i].As<Napi::Boolean>().Value();
  }

  // Only the flags in `constants`; anything else (O_PATH, O_TMPFILE, …) is refused.
  int OpenFlags(size_t i) {
    const int flags = static_cast<int>(Integer(i, 0, 2147483647.0));
    const int allowed = O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND;
    if ((flags & ~allowed) != 0 || (flags & O_ACCMODE) == O_ACCMODE) return Invalid(0);
    return flags;
  }

  struct timespec Time(size_t i) {
    if (!info_[i].IsNumber()) return Invalid(timespec{});
    const double ms = info_[i].As<Napi::Number>().DoubleValue();
    if (!std::isfinite(ms) || std::fabs(ms) > kMaxTimeMs) return Invalid(timespec{});
    const double seconds = std::floor(ms / 1000.0);
    const long nanoseconds = static_cast<long>((ms - seconds * 1000.0) * 1e6);
    return timespec{static_cast<time_t>(seconds), nanoseconds < 0 ? 0 : std::min(nanoseconds, 999999999L)};
  }

  // A string without NUL: the kernel would silently cut the path at the first one.
  std::string String(size_t i) {
    if (!info_[i].IsString()) return Invalid(std::string());
    std::string value = info_[i].As<Napi::String>().Utf8Value();
    if (value.find('\0') != std::string::npos) return Invalid(std::string());
    return value;
  }

  // An absolute host path with its trailing slashes removed: a trailing "/" or
  // a final "." or ".." would make the kernel follow a final symlink.
  std::string HostPath(size_t i) {
    std::string path = String(i);
    if (path.empty() || path[0] != '/') return Invalid(std::string());
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    const std::string last = path.substr(path.rfind('/') + 1);
    if (last == "." || last == "..") return Invalid(std::string());
    return path;
  }

  // A path for a call that acts on one final name (see the header), split.
  Target Final(size_t i) { return Split(String(i)); }

  // The same rules, for a path that is resolved whole.
  std::string FinalPath(size_t i) {
    std::string path = String(i);
    Split(path);
    return path;
  }

  // Queues the work, or rejects at once if an argument was invalid.
  template <typename T>
  Napi::Value Run(typename Job<T>::Work work, typename Job<T>::ToJs toJs) {
    Napi::Env env = info_.Env();
    if (!valid_) {
      Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
      deferred.Reject(ErrnoError(env, Failure{EINVAL, op_}));
      return deferred.Promise();
    }
    auto* job = new Job<T>(env, op_, std::move(work), std::move(toJs));
    Napi::Promise promise = job->Promise();
    job->Queue();
    return promise;
  }

  Napi::Value Run(std::function<Failure()> work) {
    return Run<Empty>([work = std::move(work)](Empty&) { return work(); }, EmptyToJs);
  }

 private:
  template <typename V>
  V Invalid(V fallback) {
    valid_ = false;
    return fallback;
  }

  Target Split(const std::string& path) {
    const size_t slash = path.rfind('/');
    Target target;
    target.parent = slash == std::string::npos ? "" : path.substr(0, slash);
    target.name = slash == std::string::npos ? path : path.substr(slash + 1);
    if (target.name.empty() || target.name == "." || target.name == "..") return Invalid(Target{});
    return target;
  }

  double Integer(size_t i, double min, double max) {
    if (!info_[i].IsNumber()) return Invalid(min);
    const double value = info_[i].As<Napi::Number>().DoubleValue();
    if (!(value >= min && value <= max) || std::trunc(value) != value) return Invalid(min);
    return value;
  }

  const Napi::CallbackInfo& info_;
  const char* op_;
  bool valid_ = true;
};

// ---------------------------------------------------------------------------
// The exported functions, one per member of JailBinding in native/jail.d.ts.

namespace js {

Napi::Value Probe(const Napi::CallbackInfo& info) {
  return Args(info, "probe").Run([] { return ops::Probe(); });
}

Napi::Value OpenRoot(const Napi::CallbackInfo& info) {
  Args args(info, "openRoot");
  const std::string hostPath = args.HostPath(0);
  return args.Run<Fd>([=](Fd& out) { return ops::OpenRoot(hostPath, out); }, FdToJs);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Args args(info, "close");
  const int fd = args.Descriptor(0);
  return args.Run([=] { return ops::Close(fd); });
}

Napi::Value FstatClose(const Napi::CallbackInfo& info) {
  Args args(info, "close");
  const int fd = args.Descriptor(0);
  return args.Run<FinalStat>([=](FinalStat& out) { return ops::FstatClose(fd, out); }, FinalStatToJs);
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Args args(info, "open");
  const int root = args.Descriptor(0);
  const std::string path = args.String(1);
  const int flags = args.OpenFlags(2);
  const mode_t mode = args.Mode(3);
  return args.Run<Fd>([=](Fd& out) { return ops::OpenRegular(root, path, flags, mode, out); }, FdToJs);
}

Napi::Value Stat(const Napi::CallbackInfo& info) {
  Args args(info, "stat");
  const int root = args.Descriptor(0);
  const std::string path = args.String(1);
  return args.Run<struct stat>([=](struct stat& st) { return ops::StatBeneath(root, path, 0, st); },
                               StatToJs);
}

// O_PATH | O_NOFOLLOW yields the final symlink itself; symlinks before it still fail.
Napi::Value Lstat(const Napi::CallbackInfo& info) {
  Args args(info, "lstat");
  const int root = args.Descriptor(0);
  const std::string path = args.String(1);
  return args.Run<struct stat>([=](struct stat& st) { return ops::StatBeneath(root, path, O_NOFOLLOW, st); },
                               StatToJs);
}

Napi::Value Fstat(const Napi::CallbackInfo& info) {
  Args args(info, "fstat");
  const int fd = args.Descriptor(0);
  return args.Run<struct stat>([=](struct stat& st) { return ops::Fstat(fd, st); }, StatToJs);
}

Napi::Value OpenDir(const Napi::CallbackInfo& info) {
  Args args(info, "openDir");
  const int root = args.Descriptor(0);
  const std::string path = args.String(1);
  return args.Run<Fd>([=](Fd& out) { return ops::OpenDir(root, path, out); }, FdToJs);
}

Napi::Value ReadDir(const Napi::CallbackInfo& info) {
  Args args(info, "readDir");
  const int dirFd = args.Descriptor(0);
  const size_t max = args.Count(1);
  return args.Run<std::vector<DirEntry>>(
      [=](std::vector<DirEntry>& out) { return ops::ReadDir(dirFd, max, out); }, DirEntriesToJs);
}

Napi::Value Mkdir(const Napi::CallbackInfo& info) {
  Args args(info, "mkdir");
  const int root = args.Descriptor(0);
  const Target target = args.Final(1);
  const mode_t mode = args.Mode(2);
  return args.Run([=] { return ops::Mkdir(root, target, mode); });
}

Napi::Value Rmdir(const Napi::CallbackInfo& info) {
  Args args(info, "rmdir");
  const int root = args.Descriptor(0);
  const Target target = args.Final(1);
  return args.Run([=] { return ops::Remove(root, target, AT_REMOVEDIR); });
}

Napi::Value Unlink(const Napi::CallbackInfo& info) {
  Args args(info, "unlink");
  const int root = args.Descriptor(0);
  const Target target = args.Final(1);
  return args.Run([=] { return ops::Remove(root, target, 0); });
}

Napi::Value Rename(const Napi::CallbackInfo& info) {
  Args args(info, "rename");
  const int root = args.Descriptor(0);
  const Target from = args.Final(1);
  const Target to = args.Final(2);
  const bool noReplace = args.Bool(3);
  return args.Run([=] { return ops::Rename(root, from, to, noReplace); });
}

// `from` obeys the final-name rules too, so that "a/." or "a/" cannot name a directory.
Napi::Value Link(const Napi::CallbackInfo& info) {
  Args args(info, "link");
  const int root = args.Descriptor(0);
  const std::string from = args.FinalPath(1);
  const Target to = args.Final(2);
  return args.Run([=] { return ops::Link(root, from, to); });
}

Napi::Value Chmod(const Napi::CallbackInfo& info) {
  Args args(info, "chmod");
  const int root = args.Descriptor(0);
  const std::string path = args.String(1);
  const mode_t mode = args.Mode(2);
  return args.Run([=] { return ops::Chmod(root, path, mode); });
}

Napi::Value Fchmod(const Napi::CallbackInfo& info) {
  Args args(info, "fchmod");
  const int fd = args.Descriptor(0);
  const mode_t mode = args.Mode(1);
  return args.Run([=] { return Check(fchmod(fd, mode), "fchmod"); });
}

Napi::Value Truncate(const Napi::CallbackInfo& info) {
  Args args(info, "truncate");
  const int root = args.Descriptor(0);
  const std::string path = args.String(1);
  const off_t size = args.Size(2);
  return args.Run([=] { return ops::Truncate(root, path, size); });
}

Napi::Value Ftruncate(const Napi::CallbackInfo& info) {
  Args args(info, "ftruncate");
  const int fd = args.Descriptor(0);
  const off_t size = args.Size(1);
  return args.Run([=] { return Check(ftruncate(fd, size), "ftruncate"); });
}

Napi::Value Utimes(const Napi::CallbackInfo& info) {
  Args args(info, "utimes");
  const int root = args.Descriptor(0);
  const std::string path = args.String(1);
  const struct timespec atime = args.Time(2);
  const struct timespec mtime = args.Time(3);
  return args.Run([=] {
    const struct timespec times[2] = {atime, mtime};
    return ops::Utimes(root, path, times);
  });
}

Napi::Value Futimes(const Napi::CallbackInfo& info) {
  Args args(info, "futimes");
  const int fd = args.Descriptor(0);
  const struct timespec atime = args.Time(1);
  const struct timespec mtime = args.Time(2);
  return args.Run([=] {
    const struct timespec times[2] = {atime, mtime};
    return Check(futimens(fd, times), "futimens");
  });
}

Napi::Value Chown(const Napi::CallbackInfo& info) {
  Args args(info, "chown");
  const int root = args.Descriptor(0);
  const std::string path = args.String(1);
  const uid_t uid = args.Id(2);
  const gid_t gid = args.Id(3);
  return args.Run([=] { return ops::Chown(root, path, uid, gid); });
}

Napi::Value Fchown(const Napi::CallbackInfo& info) {
  Args args(info, "fchown");
  const int fd = args.Descriptor(0);
  const uid_t uid = args.Id(1);
  const gid_t gid = args.Id(2);
  return args.Run([=] { return Check(fchown(fd, uid, gid), "fchown"); });
}

Napi::Value Statvfs(const Napi::CallbackInfo& info) {
  Args args(info, "statvfs");
  const int root = args.Descriptor(0);
  const std::string path = args.String(1);
  return args.Run<struct statvfs>([=](struct statvfs& st) { return ops::Statvfs(root, path, st); },
                                  StatVfsToJs);
}

Napi::Value Fstatvfs(const Napi::CallbackInfo& info) {
  Args args(info, "fstatvfs");
  const int fd = args.Descriptor(0);
  return args.Run<struct statvfs>([=](struct statvfs& st) { return Check(fstatvfs(fd, &st), "fstatvfs"); },
                                  StatVfsToJs);
}

Napi::Value Fsync(const Napi::CallbackInfo& info) {
  Args args(info, "fsync");
  const int fd = args.Descriptor(0);
  return args.Run([=] { return Check(fsync(fd), "fsync"); });
}

}  // namespace js

Napi::Object Constants(Napi::Env env) {
  Napi::Object constants = Napi::Object::New(env);
  constants.Set("O_RDONLY", O_RDONLY);
  constants.Set("O_WRONLY", O_WRONLY);
  constants.Set("O_RDWR", O_RDWR);
  constants.Set("O_CREAT", O_CREAT);
  constants.Set("O_EXCL", O_EXCL);
  constants.Set("O_TRUNC", O_TRUNC);
  constants.Set("O_APPEND", O_APPEND);
  constants.Set("S_IFMT", S_IFMT);
  constants.Set("S_IFREG", S_IFREG);
  constants.Set("S_IFDIR", S_IFDIR);
  constants.Set("S_IFLNK", S_IFLNK);
  constants.Freeze();
  return constants;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> functions[] = {
      {"probe", js::Probe},       {"openRoot", js::OpenRoot}, {"close", js::Close},
      {"open", js::Open},         {"stat", js::Stat},         {"lstat", js::Lstat},
      {"fstat", js::Fstat},       {"openDir", js::OpenDir},   {"readDir", js::ReadDir},
      {"mkdir", js::Mkdir},       {"rmdir", js::Rmdir},       {"unlink", js::Unlink},
      {"rename", js::Rename},     {"link", js::Link},         {"chmod", js::Chmod},
      {"fchmod", js::Fchmod},     {"truncate", js::Truncate}, {"ftruncate", js::Ftruncate},
      {"utimes", js::Utimes},     {"futimes", js::Futimes},   {"chown", js::Chown},
      {"fchown", js::Fchown},     {"statvfs", js::Statvfs},   {"fstatvfs", js::Fstatvfs},
      {"fsync", js::Fsync},       {"fstatClose", js::FstatClose}, {"receive", receive::Receive},
  };
  for (const auto& [name, callback] : functions) {
    exports.Set(name, Napi::Function::New(env, callback, name));
  }
  exports.Set("constants", Constants(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(jail, Init)
