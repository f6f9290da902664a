/**
 * The one place where an error becomes an SFTP status: a code and a fixed
 * message. The message never contains a host path, an errno text or anything
 * the client sent (ironport's rule: a client learns the kind of failure only).
 */
import type { JailError, JailErrorReason } from "../../services/Jail.js"
import type { InvalidPath } from "../../services/VirtualPath.js"
import type { AccessDenied } from "../common/Access.js"
import { SftpStatus } from "./Wire.js"

/**
 * A status reply's code and text.
 * @category models
 */
export interface Status {
  readonly code: (typeof SftpStatus)[keyof typeof SftpStatus]
  readonly message: string
}

/**
 * A request that is well-formed but not served: unknown extension, READLINK,
 * SYMLINK, a stale handle.
 * @category errors
 */
export interface RequestRefused {
  readonly _tag: "RequestRefused"
  readonly reason: "Unsupported" | "InvalidHandle" | "TooManyHandles" | "BadRequest" | "NoSuchUser"
}

/**
 * Every error a request handler may fail with.
 * @category models
 */
export type RequestError = JailError | AccessDenied | InvalidPath | RequestRefused

// SFTP v3 has no "already exists", "not empty" or "no space" codes: those are
// FAILURE with a message that names the condition, as OpenSSH's server does.
const byJailReason = {
  NotFound: { code: SftpStatus.NoSuchFile, message: "No such file" },
  PermissionDenied: { code: SftpStatus.PermissionDenied, message: "Permission denied" },
  AlreadyExists: { code: SftpStatus.Failure, message: "File exists" },
  NotEmpty: { code: SftpStatus.Failure, message: "Directory not empty" },
  NotADirectory: { code: SftpStatus.NoSuchFile, message: "Not a directory" },
  IsADirectory: { code: SftpStatus.Failure, message: "Is a directory" },
  SymlinkRefused: { code: SftpStatus.PermissionDenied, message: "Symbolic links are not followed" },
  InvalidPath: { code: SftpStatus.Failure, message: "Invalid file name" },
  Unsupported: { code: SftpStatus.OpUnsupported, message: "Operation not supported on this file" },
  NoSpace: { code: SftpStatus.Failure, message: "No space left on device" },
  QuotaExceeded: { code: SftpStatus.Failure, message: "Storage allocation exceeded" },
  Io: { code: SftpStatus.Failure, message: "Failure" }
} as const satisfies Record<JailErrorReason["_tag"], Status>

const byRefusal = {
  Unsupported: { code: SftpStatus.OpUnsupported, message: "Operation unsupported" },
  InvalidHandle: { code: SftpStatus.Failure, message: "Invalid handle" },
  TooManyHandles: { code: SftpStatus.Failure, message: "Too many open handles" },
  BadRequest: { code: SftpStatus.BadMessage, message: "Bad message" },
  NoSuchUser: { code: SftpStatus.NoSuchFile, message: "No such user" }
} as const satisfies Record<RequestRefused["reason"], Status>

const byAccess = {
  ReadNotAllowed: { code: SftpStatus.PermissionDenied, message: "Permission denied" },
  WriteNotAllowed: { code: SftpStatus.PermissionDenied, message: "Permission denied" },
  ChownNotAllowed: { code: SftpStatus.PermissionDenied, message: "Changing ownership is not allowed" },
  ChtimesNotAllowed: { code: SftpStatus.PermissionDenied, message: "Changing times is not allowed" }
} as const satisfies Record<AccessDenied["reason"], Status>

/**
 * The status a client receives for `error`.
 * @category constructors
 */
export const statusOf = (error: RequestError): Status => {
  switch (error._tag) {
    case "JailError":
      return byJailReason[error.reason._tag]
    case "AccessDenied":
      return byAccess[error.reason]
    case "InvalidPath":
      return byJailReason.InvalidPath
    case "RequestRefused":
      return byRefusal[error.reason]
  }
}

/**
 * A refusal value.
 * @category constructors
 */
export const refused = (reason: RequestRefused["reason"]): RequestRefused => ({ _tag: "RequestRefused", reason })
