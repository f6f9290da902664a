// node::ObjectWrap for ssh2's crypto binding, force-included when that binding is
// built (package.json "build:ssh2"), in place of the one in Node's headers.
//
// Since Node 24 the header's ObjectWrap registers an environment cleanup hook
// per instance and its destructor removes it with
// RemoveEnvironmentCleanupHook(isolate, ...), which asserts that a Node context
// is current. The destructor runs from V8's weak callback, inside whatever
// garbage collection frees the wrapper, and a collection started by an
// allocation in JIT-compiled code has no current context: the process aborts
// with "Assertion failed: (env) != nullptr". ssh2 wraps every connection's
// cipher and decipher in one, so a busy SFTP server hit it within minutes
// (test/ssh2.test.ts reproduces it in a child process in under a second).
//
// This is the ObjectWrap of earlier Node versions: the same interface, without
// the cleanup hooks. What they added, deleting still-living instances when an
// Environment is torn down, only matters for worker threads that load the
// binding and exit; Portcullis loads ssh2 on the main thread, whose teardown is
// the end of the process.
#ifndef SRC_NODE_OBJECT_WRAP_H_
#define SRC_NODE_OBJECT_WRAP_H_

#include <v8.h>
#include <assert.h>

namespace node {

class ObjectWrap {
 public:
  ObjectWrap() { refs_ = 0; }

  virtual ~ObjectWrap() {
    if (persistent().IsEmpty()) return;
    persistent().ClearWeak();
    persistent().Reset();
  }

  template <class T>
  static inline T* Unwrap(v8::Local<v8::Object> handle) {
    assert(!handle.IsEmpty());
    assert(handle->InternalFieldCount() > 0);
    void* ptr = handle->GetAlignedPointerFromInternalField(0);
    ObjectWrap* wrap = static_cast<ObjectWrap*>(ptr);
    return static_cast<T*>(wrap);
  }

  inline v8::Local<v8::Object> handle() { return handle(v8::Isolate::GetCurrent()); }

  inline v8::Local<v8::Object> handle(v8::Isolate* isolate) {
    return v8::Local<v8::Object>::New(isolate, persistent());
  }

  // NOLINTNEXTLINE(runtime/v8_persistent)
  inline v8::Persistent<v8::Object>& persistent() { return handle_; }

 protected:
  inline void Wrap(v8::Local<v8::Object> handle) {
    assert(persistent().IsEmpty());
    assert(handle->InternalFieldCount() > 0);
    handle->SetAlignedPointerInInternalField(0, this);
    persistent().Reset(v8::Isolate::GetCurrent(), handle);
    MakeWeak();
  }

  inline void MakeWeak() { persistent().SetWeak(this, WeakCallback, v8::WeakCallbackType::kParameter); }

  virtual void Ref() {
    assert(!persistent().IsEmpty());
    persistent().ClearWeak();
    refs_++;
  }

  virtual void Unref() {
    assert(!persistent().IsEmpty());
    assert(!persistent().IsWeak());
    assert(refs_ > 0);
    if (--refs_ == 0) MakeWeak();
  }

  int refs_;  // ro

 private:
  static void WeakCallback(const v8::WeakCallbackInfo<ObjectWrap>& data) {
    ObjectWrap* wrap = data.GetParameter();
    assert(wrap->refs_ == 0);
    wrap->handle_.Reset();
    delete wrap;
  }

  // NOLINTNEXTLINE(runtime/v8_persistent)
  v8::Persistent<v8::Object> handle_;
};

}  // namespace node

#endif  // SRC_NODE_OBJECT_WRAP_H_
