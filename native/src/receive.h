// receive(socketFd, fileFd, offset, callback): an upload written by a thread of
// its own. See receive.cc; the typed JS surface is in native/jail.d.ts.
#pragma once

#include <napi.h>

namespace receive {

Napi::Value Receive(const Napi::CallbackInfo& info);

}  // namespace receive
