/**
 * FTP replies: the reply codes, their wire format, and the one place where an
 * error becomes a reply.
 *
 * `replyFor` turns an error plus the current verb into a code and a fixed text
 * (the verb matters: a missing parent is 550 for RETR but a bad name is 553 for
 * STOR, as RFC 959 §5.4 lists per command). The text never contains a path, an
 * errno or anything the client sent: a client learns the kind of failure only.
 *
 * `formatReply` is the only way a reply reaches the wire. It replaces CR, LF and
 * NUL in the text, so a file name or any other echoed string can never end a
 * reply early and inject a second, forged reply line ("226 ok") into the
 * client's parser.
 */
import type { RefusalReason } from "../../services/ConnectionGuard.js"
import type { JailError, JailErrorReason } from "../../services/Jail.js"
import type { InvalidPath } from "../../services/VirtualPath.js"
import type { AccessDenied } from "../common/Access.js"
import type { BadCommand } from "./Command.js"

/**
 * Reply codes this server sends.
 * @category models
 */
export const FtpReply = {
  /** Restart marker reply (RFC 959 §4.2.2). */
  RestartMarker: 110,
  /** Service ready in nnn minutes (RFC 959 §4.2.2). */
  ServiceReadySoon: 120,
  /** Data connection already open; transfer starting (RFC 959 §4.2.2). */
  DataConnectionAlreadyOpen: 125,
  /** File status okay; about to open data connection (RFC 959 §4.2.2). */
  FileStatusOk: 150,
  /** Command okay (RFC 959 §4.2.2). */
  Ok: 200,
  /** Command not implemented, superfluous at this site (RFC 959 §4.2.2). */
  Superfluous: 202,
  /** System status, or system help reply; FEAT's answer (RFC 959 §4.2.2, RFC 2389 §3.2). */
  SystemStatus: 211,
  /** Directory status (RFC 959 §4.2.2). */
  DirectoryStatus: 212,
  /** File status; SIZE and MDTM answers (RFC 959 §4.2.2, RFC 3659 §3.1, §4.1). */
  FileStatus: 213,
  /** Help message (RFC 959 §4.2.2). */
  HelpMessage: 214,
  /** NAME system type (RFC 959 §4.2.2). */
  SystemType: 215,
  /** Service ready for new user (RFC 959 §4.2.2). */
  ServiceReady: 220,
  /** Service closing control connection (RFC 959 §4.2.2). */
  ClosingControl: 221,
  /** Data connection open; no transfer in progress (RFC 959 §4.2.2). */
  DataConnectionOpen: 225,
  /** Closing data connection; requested file action successful (RFC 959 §4.2.2). */
  ClosingData: 226,
  /** Entering Passive Mode (h1,h2,h3,h4,p1,p2) (RFC 959 §4.2.2). */
  EnteringPassive: 227,
  /** Entering Extended Passive Mode (|||port|) (RFC 2428 §3). */
  EnteringExtendedPassive: 229,
  /** User logged in, proceed (RFC 959 §4.2.2). */
  LoggedIn: 230,
  /** Security data exchange complete; AUTH TLS accepted (RFC 2228 §4, RFC 4217 §4.1). */
  AuthOk: 234,
  /** Requested file action okay, completed; MLST's answer (RFC 959 §4.2.2, RFC 3659 §7.2). */
  FileActionOk: 250,
  /** "PATHNAME" created; PWD's answer (RFC 959 §4.2.2, appendix II). */
  PathCreated: 257,
  /** User name okay, need password (RFC 959 §4.2.2). */
  NeedPassword: 331,
  /** Need account for login (RFC 959 §4.2.2). */
  NeedAccount: 332,
  /** Requested file action pending further information; RNFR and REST (RFC 959 §4.2.2, RFC 3659 §5.3). */
  FileActionPending: 350,
  /** Service not available, closing control connection (RFC 959 §4.2.2). */
  ServiceNotAvailable: 421,
  /** Can't open data connection (RFC 959 §4.2.2). */
  CantOpenData: 425,
  /** Connection closed; transfer aborted (RFC 959 §4.2.2). */
  TransferAborted: 426,
  /** Requested file action not taken: file unavailable, e.g. busy (RFC 959 §4.2.2). */
  FileBusy: 450,
  /** Requested action aborted: local error in processing (RFC 959 §4.2.2). */
  LocalError: 451,
  /** Requested action not taken: insufficient storage space in system (RFC 959 §4.2.2). */
  InsufficientStorage: 452,
  /** Syntax error, command unrecognized (RFC 959 §4.2.2). */
  SyntaxError: 500,
  /** Syntax error in parameters or arguments (RFC 959 §4.2.2). */
  SyntaxErrorInArguments: 501,
  /** Command not implemented (RFC 959 §4.2.2). */
  NotImplemented: 502,
  /** Bad sequence of commands (RFC 959 §4.2.2). */
  BadSequence: 503,
  /** Command not implemented for that parameter (RFC 959 §4.2.2). */
  NotImplementedForParameter: 504,
  /** Network protocol not supported; EPRT/EPSV with an unknown family (RFC 2428 §2, §3). */
  NetworkProtocolNotSupported: 522,
  /** Not logged in (RFC 959 §4.2.2). */
  NotLoggedIn: 530,
  /** Need account for storing files (RFC 959 §4.2.2). */
  NeedAccountForStoring: 532,
  /** Command protection level denied for policy reasons (RFC 2228 §4). */
  ProtectionLevelDenied: 533,
  /** Request denied for policy reasons; TLS required, PROT C or CCC refused (RFC 2228 §4, RFC 4217 §9). */
  DeniedByPolicy: 534,
  /** Requested action not taken: file unavailable, e.g. not found or no access (RFC 959 §4.2.2). */
  FileUnavailable: 550,
  /** Requested action aborted: page type unknown (RFC 959 §4.2.2). */
  PageTypeUnknown: 551,
  /** Requested file action aborted: exceeded storage allocation (RFC 959 §4.2.2). */
  ExceededStorage: 552,
  /** Requested action not taken: file name not allowed (RFC 959 §4.2.2). */
  FileNameNotAllowed: 553,
  /** Requested action not taken: invalid REST parameter (RFC 1123 §4.1.3.4). */
  InvalidRestParameter: 554
} as const

/**
 * One of the codes in `FtpReply`.
 * @category models
 */
export type FtpReplyCode = (typeof FtpReply)[keyof typeof FtpReply]

/**
 * A reply's code and text.
 * @category models
 */
export interface Reply {
  readonly code: FtpReplyCode
  readonly text: string
}

/**
 * Every reason a session refuses a command for, for exhaustive tables and tests.
 * @category models
 */
export const ftpRefusalReasons = [
  "NotLoggedIn",
  "LoginFailed",
  "BadSequence",
  "TlsRequired",
  "ProtRequired",
  "PbszRequired",
  "CccRefused",
  "ActiveModeDisabled",
  "BadPort",
  "NoDataConnection",
  "DataConnectionFailed",
  "TransferAborted",
  "TransferInProgress",
  "RestBeyondEnd",
  "AlloExceeded",
  "AlloMismatch",
  "NotADirectory",
  "NotAFile",
  "Unsupported",
  "UnsupportedParameter",
  "SyntaxError",
  "Quit"
] as const

/**
 * A command refused by the session itself, before or instead of a file operation.
 * `Quit` is not a failure but the signal that ends the session after 221.
 * @category errors
 */
export interface FtpRefusal {
  readonly _tag: "FtpRefusal"
  readonly reason: (typeof ftpRefusalReasons)[number]
}

/**
 * A refusal value.
 * @category constructors
 */
export const refusal = (reason: FtpRefusal["reason"]): FtpRefusal => ({ _tag: "FtpRefusal", reason })

/**
 * Every error a command handler may fail with.
 * @category models
 */
export type FtpError = JailError | AccessDenied | InvalidPath | BadCommand | FtpRefusal

// --- wire format -------------------------------------------------------------------

// Replaced by a space: CR or LF would end the reply line early and let the rest
// of a name (e.g. "a\r\n226 ok") read as a reply of its own; NUL truncates C strings
// in clients.
const lineBreaking = /[\r\n\u0000]/g

const scrub = (text: string): string => text.replace(lineBreaking, " ")

/**
 * The bytes of one reply. A string is a single line, "CODE text\r\n". An array
 * of two or more lines is an RFC 959 §4.2 multi-line reply: "CODE-first\r\n",
 * then each middle line, made to start with a space (one is added when it does
 * not already start with one, so a line such as "226 ok" can never be taken for
 * the final line and FEAT/MLST lines keep their single leading space), then
 * "CODE last\r\n". CR, LF and NUL in the text become spaces.
 * @category constructors
 */
export const formatReply = (code: number, text: string | ReadonlyArray<string>): Buffer => {
  const lines = typeof text === "string" ? [text] : text.length === 0 ? [""] : text
  if (lines.length === 1) return Buffer.from(`${code} ${scrub(lines[0]!)}\r\n`, "utf8")
  const out: Array<string> = [`${code}-${scrub(lines[0]!)}\r\n`]
  for (let i = 1; i < lines.length - 1; i++) {
    const line = scrub(lines[i]!)
    out.push(line.startsWith(" ") ? `${line}\r\n` : ` ${line}\r\n`)
  }
  out.push(`${code} ${scrub(lines[lines.length - 1]!)}\r\n`)
  return Buffer.from(out.join(""), "utf8")
}

/**
 * `path` as the quoted pathname of a 257 reply: in double quotes, with every
 * embedded double quote doubled (RFC 959 appendix II).
 * @category constructors
 */
export const quotePath = (path: string): string => `"${path.replaceAll("\"", "\"\"")}"`

// --- error mapping -----------------------------------------------------------------

/** A default reply, with overrides for particular verbs. */
interface Rule {
  readonly reply: Reply
  readonly byVerb?: Readonly<Record<string, Reply>>
}

const reply = (code: FtpReplyCode, text: string): Reply => ({ code, text })

const forVerbs = (verbs: ReadonlyArray<string>, answer: Reply): Record<string, Reply> =>
  Object.fromEntries(verbs.map((verb) => [verb, answer]))

/** Verbs that create a file under a client-chosen name. */
const storing = ["STOR", "STOU", "APPE"] as const
/** Verbs that give something a new, client-chosen name (RFC 959 lists 553 for these). */
const naming = [...storing, "MKD", "XMKD", "RNTO"] as const

const localError = reply(FtpReply.LocalError, "Requested action aborted: local error in processing")
const permissionDenied = reply(FtpReply.FileUnavailable, "Permission denied")
const nameNotAllowed = "File name not allowed"

const byJailReason = {
  NotFound: { reply: reply(FtpReply.FileUnavailable, "No such file or directory") },
  PermissionDenied: { reply: permissionDenied },
  AlreadyExists: {
    reply: reply(FtpReply.FileUnavailable, "File exists"),
    byVerb: forVerbs([...storing, "RNTO"], reply(FtpReply.FileNameNotAllowed, "File exists"))
  },
  NotEmpty: { reply: reply(FtpReply.FileUnavailable, "Directory not empty") },
  NotADirectory: { reply: reply(FtpReply.FileUnavailable, "Not a directory") },
  IsADirectory: { reply: reply(FtpReply.FileUnavailable, "Is a directory") },
  SymlinkRefused: { reply: reply(FtpReply.FileUnavailable, "Symbolic links are not followed") },
  InvalidPath: {
    reply: reply(FtpReply.FileUnavailable, nameNotAllowed),
    byVerb: forVerbs(naming, reply(FtpReply.FileNameNotAllowed, nameNotAllowed))
  },
  Unsupported: { reply: reply(FtpReply.FileUnavailable, "Operation not supported on this file") },
  // RFC 959: 452 is "insufficient storage space in system" (a full file system, may
  // clear up), 552 "exceeded storage allocation" (this user's quota or a file size
  // limit); ProFTPD answers ENOSPC and EDQUOT/EFBIG the same way.
  NoSpace: { reply: reply(FtpReply.InsufficientStorage, "Insufficient storage space") },
  QuotaExceeded: { reply: reply(FtpReply.ExceededStorage, "Exceeded storage allocation") },
  Io: { reply: localError }
} as const satisfies Record<JailErrorReason["_tag"], Rule>

const byAccess = {
  ReadNotAllowed: { reply: permissionDenied },
  WriteNotAllowed: { reply: permissionDenied },
  ChownNotAllowed: { reply: reply(FtpReply.FileUnavailable, "Changing ownership is not allowed") },
  ChtimesNotAllowed: { reply: reply(FtpReply.FileUnavailable, "Changing times is not allowed") }
} as const satisfies Record<AccessDenied["reason"], Rule>

const byBadCommand = {
  BadVerb: { reply: reply(FtpReply.SyntaxError, "Syntax error, command unrecognized") },
  ControlCharacter: { reply: reply(FtpReply.SyntaxErrorInArguments, "Control characters are not allowed in arguments") }
} as const satisfies Record<BadCommand["reason"], Rule>

const protocolNotSupported = reply(FtpReply.NetworkProtocolNotSupported, "Network protocol not supported, use (1,2)")

const byRefusal = {
  NotLoggedIn: { reply: reply(FtpReply.NotLoggedIn, "Please login with USER and PASS") },
  LoginFailed: { reply: reply(FtpReply.NotLoggedIn, "Login incorrect") },
  BadSequence: { reply: reply(FtpReply.BadSequence, "Bad sequence of commands") },
  TlsRequired: { reply: reply(FtpReply.DeniedByPolicy, "TLS is required: use AUTH TLS") },
  ProtRequired: { reply: reply(FtpReply.DeniedByPolicy, "Data connections must be protected: use PROT P") },
  PbszRequired: { reply: reply(FtpReply.BadSequence, "PBSZ after AUTH TLS is required first") },
  CccRefused: { reply: reply(FtpReply.DeniedByPolicy, "The control connection stays protected") },
  ActiveModeDisabled: { reply: reply(FtpReply.NotImplemented, "Active mode is disabled: use PASV or EPSV") },
  BadPort: { reply: reply(FtpReply.SyntaxErrorInArguments, "Illegal data connection address") },
  NoDataConnection: { reply: reply(FtpReply.CantOpenData, "Use PASV, EPSV or PORT first") },
  DataConnectionFailed: { reply: reply(FtpReply.CantOpenData, "Can't open data connection") },
  TransferAborted: { reply: reply(FtpReply.TransferAborted, "Connection closed; transfer aborted") },
  TransferInProgress: { reply: reply(FtpReply.BadSequence, "A transfer is in progress") },
  RestBeyondEnd: { reply: reply(FtpReply.InvalidRestParameter, "Restart offset is beyond the end of the file") },
  AlloExceeded: { reply: reply(FtpReply.ExceededStorage, "Exceeded storage allocation") },
  AlloMismatch: { reply: reply(FtpReply.ExceededStorage, "Transfer size does not match ALLO") },
  NotADirectory: { reply: reply(FtpReply.FileUnavailable, "Not a directory") },
  NotAFile: { reply: reply(FtpReply.FileUnavailable, "Not a plain file") },
  Unsupported: { reply: reply(FtpReply.NotImplemented, "Command not implemented") },
  UnsupportedParameter: {
    reply: reply(FtpReply.NotImplementedForParameter, "Command not implemented for that parameter"),
    byVerb: forVerbs(["EPSV", "EPRT"], protocolNotSupported)
  },
  SyntaxError: {
    reply: reply(FtpReply.SyntaxErrorInArguments, "Syntax error in parameters or arguments"),
    // No verb: the line did not even parse as a command.
    byVerb: { "": reply(FtpReply.SyntaxError, "Syntax error, command unrecognized") }
  },
  Quit: { reply: reply(FtpReply.ClosingControl, "Goodbye") }
} as const satisfies Record<FtpRefusal["reason"], Rule>

const pick = (rule: Rule, verb: string): Reply => {
  const key = verb.toUpperCase()
  return rule.byVerb !== undefined && Object.hasOwn(rule.byVerb, key) ? rule.byVerb[key] ?? rule.reply : rule.reply
}

/**
 * The reply a client receives when `verb` fails with `error`. `verb` is the
 * upper-case verb, or "" when the line did not parse.
 * @category constructors
 */
export const replyFor = (error: FtpError, verb: string): Reply => {
  switch (error._tag) {
    case "JailError":
      return pick(byJailReason[error.reason._tag], verb)
    case "AccessDenied":
      return pick(byAccess[error.reason], verb)
    case "InvalidPath":
      return pick(byJailReason.InvalidPath, verb)
    case "BadCommand":
      return pick(byBadCommand[error.reason], verb)
    case "FtpRefusal":
      return pick(byRefusal[error.reason], verb)
  }
}

const tooManyConnections = reply(FtpReply.ServiceNotAvailable, "Too many connections, try again later")

const byConnectionRefusal = {
  Banned: reply(FtpReply.ServiceNotAvailable, "Too many failed logins, try again later"),
  TooManyPreAuth: tooManyConnections,
  TooManyPreAuthFromIp: tooManyConnections
} as const satisfies Record<RefusalReason, Reply>

/**
 * The one line a connection refused at accept (ConnectionGuard) reads before it
 * is closed: 421, which RFC 959 §4.2 allows in answer to anything, the greeting too.
 * @category constructors
 */
export const replyForRefusedConnection = (reason: RefusalReason): Reply => byConnectionRefusal[reason]
