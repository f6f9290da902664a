// The errno name ("ENOSPC") and description of an error number, shared by the
// addon's source files. glibc 2.32+ names errnos without a shared buffer;
// elsewhere the name is unknown (callers fall back to "E<number>") and strerror
// describes it.
#pragma once

#include <string.h>

#include <string>

namespace errno_name {

#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 32)
inline const char* Name(int err) { return strerrorname_np(err); }
inline const char* Description(int err) { return strerrordesc_np(err); }
#else
inline const char* Name(int) { return nullptr; }
inline const char* Description(int err) { return strerror(err); }
#endif

// The code a JS error carries: the errno name, or "E<number>" when it has none.
inline std::string Code(int err) {
  const char* name = Name(err);
  return name != nullptr ? name : "E" + std::to_string(err);
}

}  // namespace errno_name
