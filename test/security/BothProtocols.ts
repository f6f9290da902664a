/**
 * One user driven through SFTP (ssh2's client) and FTP (the raw client) at once,
 * with what each protocol answered reduced to one comparable string:
 * `file:<content>` for a file that was read, `ok` for a change that was made,
 * `listed:<names>` for a listing, and `refused:<Kind>` for a refusal, where Kind
 * is the jail reason both protocols' error tables start from (NotFound,
 * SymlinkRefused, InvalidPath, ...). The same request through both protocols must
 * give the same string: paths are cleaned once, by the same code, and the kernel
 * decides the rest.
 */
import { Effect, type Scope } from "effect"
import type ssh2 from "ssh2"
import {
  connect as ftpConnect,
  type FtpControlClosed,
  type FtpRawClient,
  type FtpReply,
  openData,
  parsePasvReply,
  type UnexpectedReply
} from "../utils/FtpRawClient.js"
import { call, connect as sftpConnect, type SftpStatusError } from "../utils/SftpClient.js"

/** What a client observed, in the same words for both protocols. */
export type Outcome = string

// The fixed texts of src/protocols/sftp/Status.ts and src/protocols/ftp/Replies.ts, by jail reason.
const sftpKinds: Readonly<Record<string, string>> = {
  "No such file": "NotFound",
  "Not a directory": "NotADirectory",
  "Is a directory": "IsADirectory",
  "Symbolic links are not followed": "SymlinkRefused",
  "Invalid file name": "InvalidPath",
  "Operation not supported on this file": "Unsupported",
  "Operation unsupported": "Unsupported",
  "Permission denied": "PermissionDenied",
  "File exists": "AlreadyExists",
  "Directory not empty": "NotEmpty",
  "Changing ownership is not allowed": "ChownNotAllowed",
  "Changing times is not allowed": "ChtimesNotAllowed"
}

const ftpKinds: Readonly<Record<string, string>> = {
  "No such file or directory": "NotFound",
  "Not a directory": "NotADirectory",
  "Is a directory": "IsADirectory",
  "Symbolic links are not followed": "SymlinkRefused",
  "File name not allowed": "InvalidPath",
  // A control character cannot reach a path through FTP: the command line itself is refused.
  "Control characters are not allowed in arguments": "InvalidPath",
  "Operation not supported on this file": "Unsupported",
  "Not a plain file": "Unsupported",
  "Permission denied": "PermissionDenied",
  "File exists": "AlreadyExists",
  "Directory not empty": "NotEmpty",
  "Changing ownership is not allowed": "ChownNotAllowed",
  "Changing times is not allowed": "ChtimesNotAllowed"
}

/** The refusal an SFTP status stands for. */
export const sftpKind = (error: SftpStatusError): Outcome =>
  `refused:${sftpKinds[error.message] ?? `other(${error.code} ${error.message})`}`

/** The refusal an FTP reply stands for. */
export const ftpKind = (reply: FtpReply): Outcome => {
  const text = reply.text.slice(4)
  return `refused:${(reply.code >= 500 && ftpKinds[text]) || `other(${reply.text})`}`
}

/** An SFTP request that changes something: `ok` or the refusal. */
export const sftpDo = <A>(effect: Effect.Effect<A, SftpStatusError>): Effect.Effect<Outcome> =>
  effect.pipe(Effect.map(() => "ok"), Effect.catch((error) => Effect.succeed(sftpKind(error))))

/** Reads a file through SFTP (open, reads of at most 1 MiB in all, close). */
export const sftpRead = (sftp: ssh2.SFTPWrapper, path: string): Effect.Effect<Outcome> =>
  Effect.gen(function*() {
    const handle = yield* call<Buffer>((cb) => sftp.open(path, "r", cb))
    const chunks: Array<Buffer> = []
    let offset = 0
    while (offset < 1024 * 1024) {
      const buffer = Buffer.alloc(65536)
      const n = yield* call<number>((cb) => sftp.read(handle, buffer, 0, buffer.length, offset, (error, bytes) => cb(error, bytes)))
      if (n === 0) break
      chunks.push(buffer.subarray(0, n))
      offset += n
    }
    yield* call((cb) => sftp.close(handle, cb))
    return `file:${Buffer.concat(chunks).toString("utf8")}`
  }).pipe(Effect.catch((error) => Effect.succeed(sftpKind(error))))

/** Writes a whole file through SFTP (open with create and truncate, one write, close). */
export const sftpWrite = (sftp: ssh2.SFTPWrapper, path: string, content: string): Effect.Effect<Outcome> =>
  Effect.gen(function*() {
    const handle = yield* call<Buffer>((cb) => sftp.open(path, "w", cb))
    const data = Buffer.from(content)
    yield* call((cb) => sftp.write(handle, data, 0, data.length, 0, cb))
    yield* call((cb) => sftp.close(handle, cb))
    return "ok"
  }).pipe(Effect.catch((error) => Effect.succeed(sftpKind(error))))

/** Lists a directory through SFTP: its names, sorted. */
export const sftpList = (sftp: ssh2.SFTPWrapper, path: string): Effect.Effect<Outcome> =>
  call<Array<ssh2.FileEntry>>((cb) => sftp.readdir(path, cb)).pipe(
    Effect.map((entries) => `listed:${entries.map((e) => e.filename).sort().join(",")}`),
    Effect.catch((error) => Effect.succeed(sftpKind(error)))
  )

type FtpFailure = FtpControlClosed | UnexpectedReply | Error

/**
 * A data command (RETR, LIST, NLST, MLSD, STOR, APPE) on a fresh passive
 * connection: the bytes the server sent, or the refusal. `upload` is sent and the
 * data connection closed for STOR/APPE.
 */
export const ftpTransfer = (client: FtpRawClient, line: string, upload?: string) =>
  Effect.gen(function*() {
    const pasv = yield* client.expect("PASV", 227)
    const port = parsePasvReply(pasv)!.port
    const first = yield* client.command(line)
    if (first.code !== 150) return { refused: ftpKind(first), bytes: Buffer.alloc(0) }
    const data = yield* openData(port)
    if (upload !== undefined) {
      yield* data.connected
      data.socket.end(upload)
    }
    const bytes = yield* data.done
    const final = yield* client.reply
    return final.code === 226 ? { refused: undefined, bytes } : { refused: ftpKind(final), bytes }
  })

/** Reads a file through FTP (PASV, RETR). */
export const ftpRead = (client: FtpRawClient, path: string): Effect.Effect<Outcome, FtpFailure, Scope.Scope> =>
  ftpTransfer(client, `RETR ${path}`).pipe(
    Effect.map(({ bytes, refused }) => refused ?? `file:${bytes.toString("utf8")}`)
  )

/** Stores a whole file through FTP (PASV, STOR). */
export const ftpWrite = (client: FtpRawClient, path: string, content: string): Effect.Effect<Outcome, FtpFailure, Scope.Scope> =>
  ftpTransfer(client, `STOR ${path}`, content).pipe(Effect.map(({ refused }) => refused ?? "ok"))

/** Lists a directory through FTP (PASV, NLST): its names, sorted. */
export const ftpList = (client: FtpRawClient, path: string): Effect.Effect<Outcome, FtpFailure, Scope.Scope> =>
  ftpTransfer(client, `NLST ${path}`).pipe(
    Effect.map(({ bytes, refused }) =>
      refused ?? `listed:${bytes.toString("utf8").split("\r\n").filter((n) => n !== "").sort().join(",")}`
    )
  )

/** A control-connection command: `ok` for a 2xx/3xx reply, otherwise the refusal. */
export const ftpDo = (client: FtpRawClient, line: string): Effect.Effect<Outcome, FtpControlClosed> =>
  client.command(line).pipe(Effect.map((reply) => (reply.code < 400 ? "ok" : ftpKind(reply))))

/** Both protocols logged in as `username` (password `<username>-password`) on `server`. */
export const bothSessions = (server: { readonly port: number; readonly ftpPort: number }, username = "alice") =>
  Effect.gen(function*() {
    const { client, sftp } = yield* sftpConnect(server.port, username, { password: `${username}-password` })
    const ftp = yield* ftpConnect(server.ftpPort)
    yield* ftp.login(username)
    return { ssh: client, sftp, ftp }
  })
