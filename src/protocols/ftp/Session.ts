/**
 * One FTP control connection, from the greeting to QUIT: the command table and
 * the session state (login, working directory, TLS/PROT, REST/RNFR/ALLO, the
 * prepared data connection, the running transfer).
 *
 * Commands are served one at a time, except that a transfer runs in its own
 * fiber so the control connection stays responsive: ABOR interrupts it (426,
 * then 226), STAT/NOOP answer, QUIT ends it, anything else gets 503 until it
 * ends. Every file operation goes through the shared access check and the
 * user's jail, exactly as for SFTP. Errors become replies in Replies.ts only.
 */
import { Cause, Clock, type Duration, Effect, Exit, Fiber, Result, Scope, Stream } from "effect"
import type * as net from "node:net"
import type * as tls from "node:tls"
import { ConnectionGuard } from "../../services/ConnectionGuard.js"
import { Events, LoginFailed, LoginSucceeded, Logout, UploadCompleted } from "../../services/Events.js"
import { type DirEntry, Jail, type JailError, type JailHandle, type OpenMode } from "../../services/Jail.js"
import type { Principal } from "../../services/Principal.js"
import type { SessionControl } from "../../services/Sessions.js"
import { UserRegistry } from "../../services/UserRegistry.js"
import * as VirtualPath from "../../services/VirtualPath.js"
import * as Access from "../common/Access.js"
import { type BadCommand, parseCommand } from "./Command.js"
import type { ControlChannel } from "./ControlChannel.js"
import * as DataChannel from "./DataChannel.js"
import { formatListLine, formatMdtm, formatMlsxFacts, formatNlstLine, mlstFeature, parseMfmtTime } from "./Listing.js"
import type { PassivePortPool } from "./PassivePorts.js"
import { type FtpError, type FtpRefusal, quotePath, refusal as refuse, type Reply, replyFor } from "./Replies.js"

/**
 * What every FTP session of a listener shares.
 * @category models
 */
export interface FtpSessionOptions {
  readonly policy: Access.AccessPolicy
  readonly tempExtensions: ReadonlyArray<string>
  readonly requireTls: boolean
  readonly requireSessionReuse: boolean
  readonly allowActiveMode: boolean
  readonly passiveAddress: string | undefined
  readonly passivePorts: PassivePortPool
  readonly dataAcceptTimeout: Duration.Input
  /** Per-control-connection TLS options (fresh ticket keys each call); undefined without TLS. */
  readonly tlsOptions: (() => tls.TLSSocketOptions) | undefined
  readonly maxLoginAttempts: number
}

type Verb = string

type Failure = JailError | Access.AccessDenied | VirtualPath.InvalidPath | FtpRefusal | BadCommand | DataChannel.DataChannelError

/** A data-connection failure as the client learns it: an address we will not connect to, or 425. */
const asFtpError = (error: Failure): FtpError =>
  error._tag !== "DataChannelError"
    ? error
    : refuse(error.reason === "BadPort" ? "BadPort" : "DataConnectionFailed")

/** Verbs answered before login (RFC 4217 needs AUTH, PBSZ, PROT there too). */
const beforeLogin = new Set(["USER", "PASS", "QUIT", "NOOP", "FEAT", "HELP", "SYST", "AUTH", "PBSZ", "PROT", "OPTS", "CCC"])
/** Verbs answered while a transfer runs. */
const duringTransfer = new Set(["ABOR", "STAT", "NOOP", "QUIT"])

interface State {
  user: string | undefined
  principal: Principal | undefined
  jail: JailHandle | undefined
  access: Access.Access | undefined
  cwd: VirtualPath.VirtualPath
  failedLogins: number
  pbsz: boolean
  protPrivate: boolean
  epsvAll: boolean
  rest: number
  allo: number | undefined
  renameFrom: VirtualPath.VirtualPath | undefined
  data: {
    readonly scope: Scope.Closeable
    readonly connect: (direction: DataChannel.Direction) => Effect.Effect<net.Socket, DataChannel.DataChannelError>
  } | undefined
  transfer: Fiber.Fiber<void> | undefined
  transferToken: object | undefined
  tlsOptions: tls.TLSSocketOptions | undefined
}

const isTemporary = (options: FtpSessionOptions, path: string) => options.tempExtensions.some((ext) => ext.length > 0 && path.endsWith(ext))

/**
 * Serves one FTP control connection until QUIT, disconnect, timeout or shutdown.
 * @category constructors
 */
export const serve = (
  control: ControlChannel,
  session: SessionControl,
  options: FtpSessionOptions,
  /** The TLS options the control connection was secured with (implicit FTPS), shared by its data connections. */
  controlTls: tls.TLSSocketOptions | undefined
) =>
  Effect.gen(function*() {
    const registry = yield* UserRegistry
    const events = yield* Events
    const jails = yield* Jail
    const guard = yield* ConnectionGuard
    const sessionScope = yield* Effect.scope
    const clientIp = control.remoteAddress.replace(/^::ffff:/, "")
    const state: State = {
      user: undefined,
      principal: undefined,
      jail: undefined,
      access: undefined,
      cwd: VirtualPath.root,
      failedLogins: 0,
      pbsz: false,
      protPrivate: false,
      epsvAll: false,
      rest: 0,
      allo: undefined,
      renameFrom: undefined,
      data: undefined,
      transfer: undefined,
      transferToken: undefined,
      tlsOptions: controlTls
    }

    const reply = control.send
    const fail = (verb: Verb, error: Failure) => {
      const { code, text } = replyFor(asFtpError(error), verb)
      return reply(code, text)
    }
    const resolve = (argument: string): Effect.Effect<VirtualPath.VirtualPath, VirtualPath.InvalidPath> => {
      const resolved = VirtualPath.resolve(state.cwd, argument)
      return Result.isSuccess(resolved) ? Effect.succeed(resolved.success) : Effect.fail(resolved.failure)
    }
    const loggedIn = () => state.jail !== undefined && state.access !== undefined
    const jail = () => state.jail!
    const access = () => state.access!

    // --- data connections -------------------------------------------------------------
    const dropData = Effect.suspend(() => {
      const data = state.data
      state.data = undefined
      return data ? Scope.close(data.scope, Exit.void) : Effect.void
    })
    const dataTls = () => (state.protPrivate ? state.tlsOptions : undefined)
    const dataOptions = () => ({
      controlSocket: control.socket(),
      tls: dataTls(),
      requireSessionReuse: options.requireSessionReuse
    })

    const preparePassive = (extended: boolean) =>
      Effect.gen(function*() {
        yield* dropData
        const scope = yield* Scope.make()
        const listener = yield* DataChannel.passive({
          ...dataOptions(),
          ports: options.passivePorts,
          acceptTimeout: options.dataAcceptTimeout,
          advertisedAddress: options.passiveAddress
        }).pipe(Scope.provide(scope), Effect.tapError(() => Scope.close(scope, Exit.void)))
        state.data = { scope, connect: (direction) => listener.accept(direction) }
        if (extended) return yield* reply(229, `Entering Extended Passive Mode (${DataChannel.formatEpsv(listener.port)})`)
        // PASV can only describe IPv4 (RFC 2428 §4): IPv6 clients must use EPSV.
        const pasv = DataChannel.formatPasv(listener.host, listener.port)
        if (pasv === undefined) {
          yield* dropData
          return yield* Effect.fail(refuse("UnsupportedParameter"))
        }
        yield* reply(227, `Entering Passive Mode (${pasv}).`)
      })

    const prepareActive = (verb: Verb, target: { readonly host: string; readonly port: number } | undefined) =>
      Effect.gen(function*() {
        if (!options.allowActiveMode) return yield* Effect.fail(refuse("ActiveModeDisabled"))
        if (state.epsvAll) return yield* Effect.fail(refuse("BadSequence"))
        if (!target) return yield* Effect.fail(refuse("SyntaxError"))
        yield* DataChannel.checkActiveTarget(target, clientIp)
        yield* dropData
        const scope = yield* Scope.make()
        state.data = {
          scope,
          connect: (direction) => DataChannel.active({ ...dataOptions(), target, direction }).pipe(Scope.provide(scope))
        }
        return yield* reply(200, `${verb} command successful`)
      })

    /** Refuses a transfer up front, before any file is opened or created, when it could not run. */
    const dataReady = Effect.suspend(() =>
      options.requireTls && !state.protPrivate
        ? dropData.pipe(Effect.andThen(Effect.fail(refuse("ProtRequired"))))
        : state.data === undefined
        ? Effect.fail(refuse("NoDataConnection"))
        : Effect.void
    )

    /**
     * Runs `use` on the prepared data connection: 150, the transfer, and the final
     * reply to send (226, or the error's). The caller sends it once the transfer is
     * no longer marked as running, so a client that answers 226 at once is served.
     */
    const withData = <E extends Failure>(
      verb: Verb,
      direction: DataChannel.Direction,
      use: (socket: net.Socket) => Effect.Effect<void, E>,
      opening = "Opening data connection"
    ): Effect.Effect<Reply> =>
      Effect.gen(function*() {
        // With TLS required, data travels only under PROT P (RFC 4217 §9): never in clear by default.
        if (options.requireTls && !state.protPrivate) {
          yield* dropData
          return yield* Effect.fail(refuse("ProtRequired"))
        }
        const data = state.data
        state.data = undefined
        if (!data) return yield* Effect.fail(refuse("NoDataConnection"))
        yield* reply(150, opening)
        yield* data.connect(direction).pipe(
          Effect.flatMap((socket) =>
            use(socket).pipe(
              // Once the transfer has begun, a broken data connection is 426, not 425.
              Effect.mapError((error: E): Failure => (error._tag === "DataChannelError" ? refuse("TransferAborted") : error)),
              Effect.andThen(DataChannel.closeData(socket))
            )
          ),
          Effect.ensuring(Scope.close(data.scope, Exit.void))
        )
        return { code: 226, text: "Transfer complete" } as Reply
      }).pipe(
        Effect.catch((error: Failure) => Effect.succeed(replyFor(asFtpError(error), verb))),
        Effect.onInterrupt(() => reply(426, "Connection closed; transfer aborted"))
      )

    const startTransfer = (transfer: Effect.Effect<Reply>) =>
      Effect.gen(function*() {
        // Only this transfer's own mark is cleared: the client may start the next one right after 226.
        const token = {}
        const done = Effect.sync(() => {
          if (state.transferToken === token) state.transfer = undefined
        })
        state.transferToken = token
        const fiber = yield* transfer.pipe(
          Effect.flatMap((final) => done.pipe(Effect.andThen(reply(final.code, final.text)))),
          Effect.ensuring(done),
          Effect.forkIn(sessionScope)
        )
        // A transfer that already ended (it failed at once) is not running any more.
        if (fiber.pollUnsafe() === undefined && state.transferToken === token) state.transfer = fiber
      })

    const touchAfter = <A, E>(effect: Effect.Effect<A, E>) => Effect.tap(effect, () => session.touch)

    // --- file commands ------------------------------------------------------------------
    const retrieve = (verb: Verb, argument: string) =>
      Effect.gen(function*() {
        const path = yield* resolve(argument)
        yield* access().read(path)
        yield* dataReady
        const file = yield* jail().openFile(path, { read: true, write: false })
        const offset = state.rest
        state.rest = 0
        return withData(verb, "send", (socket) =>
          Effect.gen(function*() {
            const size = (yield* file.stat).size
            if (offset > size) return yield* Effect.fail(refuse("RestBeyondEnd"))
            yield* DataChannel.sendFile(socket, (at, length, into) => touchAfter(file.read(at, length, into)), offset)
          })).pipe(Effect.ensuring(Effect.ignore(file.close)))
      })

    const store = (verb: "STOR" | "APPE" | "STOU", argument: string) =>
      Effect.gen(function*() {
        const path = verb === "STOU" ? yield* uniquePath(argument) : yield* resolve(argument)
        yield* access().write(path)
        yield* dataReady
        const offset = verb === "STOR" ? state.rest : 0
        state.rest = 0
        const expected = state.allo
        state.allo = undefined
        const mode: OpenMode = verb === "APPE"
          ? { read: false, write: true, create: true, append: true }
          : verb === "STOU"
          ? { read: false, write: true, create: true, exclusive: true }
          : { read: false, write: true, create: true }
        const file = yield* jail().openFile(path, mode)
        return withData(verb, "receive", (socket) =>
          Effect.gen(function*() {
            // Truncate only once the data connection is up: a failed PASV/PORT must not empty the file.
            if (verb === "STOR") yield* file.setAttributes({ size: offset })
            const receiveFrom = file.receiveFrom
            const { bytes } = yield* DataChannel.receiveFile(socket, {
              write: (at, data) => touchAfter(file.write(at, data)),
              // Bytes that reach the file count as activity, as each batch written does.
              receiveFrom: receiveFrom && ((fd, at) => receiveFrom(fd, at, session.touch))
            }, offset)
            if (expected !== undefined && bytes !== expected) return yield* Effect.fail(refuse("AlloMismatch"))
            // The close reads the final size in the same call.
            const final = yield* file.close
            // Announce only what arrived whole and closed cleanly.
            if (final === undefined) yield* Effect.logWarning("upload closed but its size could not be read: not announced")
            else if (!isTemporary(options, path)) yield* announce(path, final.size)
          }), verb === "STOU" ? `FILE: ${VirtualPath.basename(path)}` : undefined).pipe(Effect.ensuring(Effect.ignore(file.close)))
      })

    const uniquePath = (argument: string) =>
      Effect.gen(function*() {
        const base = argument === "" ? "upload" : VirtualPath.basename(yield* resolve(argument))
        const stamp = yield* Clock.currentTimeMillis
        return yield* resolve(`${base}.${stamp.toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`)
      })

    const announce = (path: VirtualPath.VirtualPath, size: number) =>
      events.publishUpload(new UploadCompleted({
        protocol: "ftp",
        username: state.principal!.username,
        path,
        fullPath: jail().hostPath(path),
        clientIp,
        size
      }))

    /** LIST/NLST/MLSD: the directory (or the one file) named by the argument, streamed to the data connection. */
    const listing = (verb: "LIST" | "NLST" | "MLSD", argument: string) =>
      Effect.gen(function*() {
        // Options such as "-la" are accepted and ignored (clients send them; no globbing is ever done).
        const target = argument.replace(/^(-\S+\s*)+/, "")
        const path = yield* resolve(target)
        yield* access().list(path)
        const stat = yield* jail().stat(path)
        const now = yield* Clock.currentTimeMillis
        const perms = { canRead: state.principal!.canRead, canWrite: state.principal!.canWrite }
        const line = (entry: { readonly name: string; readonly stat: typeof stat }) =>
          verb === "LIST" ? formatListLine(entry, now) : verb === "NLST" ? formatNlstLine(entry) : formatMlsxFacts(entry.name, entry.stat, perms)
        const entries: Stream.Stream<DirEntry, JailError | FtpRefusal> = stat.type === "directory"
          ? jail().list(path)
          : verb === "MLSD"
          ? Stream.fail(refuse("NotADirectory"))
          : Stream.make({ name: VirtualPath.basename(path), stat })
        return withData(verb, "send", (socket) =>
          entries.pipe(
            Stream.map(line),
            Stream.filter((text) => text !== ""),
            Stream.map((text) => Buffer.from(`${text}\r\n`)),
            Stream.runForEach((bytes) => DataChannel.writeAll(socket, bytes))
          ))
      })

    // --- the command table ----------------------------------------------------------------
    type Handler = (argument: string, verb: Verb) => Effect.Effect<void, Failure>
    const ok = (code: number, text: string) => () => reply(code, text)

    const commands: Record<string, Handler> = {
      USER: (argument) =>
        Effect.gen(function*() {
          if (options.requireTls && !control.isTls()) return yield* Effect.fail(refuse("TlsRequired"))
          if (loggedIn()) return yield* Effect.fail(refuse("BadSequence"))
          state.user = argument
          yield* reply(331, "Password required")
        }),
      PASS: (argument) =>
        Effect.gen(function*() {
          if (options.requireTls && !control.isTls()) return yield* Effect.fail(refuse("TlsRequired"))
          if (state.user === undefined || loggedIn()) return yield* Effect.fail(refuse("BadSequence"))
          const username = state.user
          state.user = undefined
          // A banned client's connection still waiting to log in gets no further attempt (ConnectionGuard).
          if (yield* guard.isBanned(clientIp)) {
            yield* reply(421, "Too many failed logins")
            return yield* Effect.fail(refuse("Quit"))
          }
          const login = yield* Effect.result(registry.authenticate({ _tag: "Password", username, password: argument }))
          if (Result.isFailure(login)) {
            state.failedLogins++
            const banned = yield* guard.recordFailure(clientIp)
            yield* events.publishAuth(new LoginFailed({ protocol: "ftp", username, clientIp, method: "password" }))
            if (banned || state.failedLogins >= options.maxLoginAttempts) {
              yield* reply(421, "Too many failed logins")
              return yield* Effect.fail(refuse("Quit"))
            }
            return yield* Effect.fail(refuse("LoginFailed"))
          }
          const principal = login.success
          state.jail = yield* jails.open(principal.root).pipe(Scope.provide(sessionScope))
          state.principal = principal
          state.access = Access.make(principal, options.policy)
          yield* session.authenticated(principal.username)
          yield* events.publishAuth(new LoginSucceeded({ protocol: "ftp", username: principal.username, clientIp, method: "password" }))
          yield* Effect.addFinalizer(() => events.publishAuth(new Logout({ protocol: "ftp", username: principal.username, clientIp }))).pipe(
            Scope.provide(sessionScope)
          )
          yield* reply(230, "Login successful")
        }),
      QUIT: () => reply(221, "Goodbye").pipe(Effect.andThen(Effect.fail(refuse("Quit")))),
      NOOP: ok(200, "NOOP ok"),
      SYST: ok(215, "UNIX Type: L8"),
      HELP: ok(214, "Help: see RFC 959, 2389, 2428, 3659 and 4217"),
      FEAT: () =>
        reply(211, [
          "Features:",
          ...(options.tlsOptions ? ["AUTH TLS", "PBSZ", "PROT"] : []),
          "EPSV",
          "EPRT",
          "MDTM",
          ...(options.policy.allowChtimes ? ["MFMT"] : []),
          mlstFeature,
          "REST STREAM",
          "SIZE",
          "TVFS",
          "UTF8",
          "End"
        ]),
      OPTS: (argument) =>
        /^UTF8( ON)?$/i.test(argument) || /^MLST /i.test(argument) ? reply(200, "OK") : Effect.fail(refuse("Unsupported")),
      AUTH: (argument) =>
        Effect.gen(function*() {
          if (!options.tlsOptions) return yield* Effect.fail(refuse("Unsupported"))
          if (!/^(TLS|TLS-C|SSL)$/i.test(argument)) return yield* Effect.fail(refuse("UnsupportedParameter"))
          if (control.isTls()) return yield* Effect.fail(refuse("BadSequence"))
          state.tlsOptions = options.tlsOptions()
          yield* control.startTls(state.tlsOptions).pipe(Effect.orDie)
          // RFC 4217 §4: nothing negotiated in plaintext survives the upgrade.
          state.user = undefined
          state.rest = 0
          state.allo = undefined
          state.renameFrom = undefined
          state.pbsz = false
          state.protPrivate = false
          yield* dropData
        }),
      PBSZ: (argument) =>
        Effect.gen(function*() {
          if (!control.isTls()) return yield* Effect.fail(refuse("BadSequence"))
          state.pbsz = true
          yield* reply(200, argument === "0" ? "PBSZ=0" : "PBSZ=0")
        }),
      PROT: (argument) =>
        Effect.gen(function*() {
          if (!control.isTls() || !state.pbsz) return yield* Effect.fail(refuse("PbszRequired"))
          const level = argument.toUpperCase()
          if (level === "P") {
            state.protPrivate = true
            return yield* reply(200, "Protection level set to Private")
          }
          if (level === "C") {
            if (options.requireTls) return yield* Effect.fail(refuse("ProtRequired"))
            state.protPrivate = false
            return yield* reply(200, "Protection level set to Clear")
          }
          return yield* Effect.fail(refuse("UnsupportedParameter"))
        }),
      CCC: () => Effect.fail(refuse("CccRefused")),
      TYPE: (argument) =>
        /^(A|A N|I|L 8)$/i.test(argument) ? reply(200, "Type set (transfers are binary)") : Effect.fail(refuse("UnsupportedParameter")),
      MODE: (argument) => (/^S$/i.test(argument) ? reply(200, "Mode set to S") : Effect.fail(refuse("UnsupportedParameter"))),
      STRU: (argument) => (/^F$/i.test(argument) ? reply(200, "Structure set to F") : Effect.fail(refuse("UnsupportedParameter"))),
      PWD: () => reply(257, `${quotePath(state.cwd)} is the current directory`),
      CWD: (argument) =>
        Effect.gen(function*() {
          const path = yield* resolve(argument)
          const stat = yield* jail().stat(path)
          if (stat.type !== "directory") return yield* Effect.fail(refuse("NotADirectory"))
          state.cwd = path
          yield* reply(250, "Directory changed")
        }),
      CDUP: () => commands["CWD"]!("..", "CDUP"),
      MKD: (argument) =>
        Effect.gen(function*() {
          const path = yield* resolve(argument)
          yield* access().write(path)
          yield* jail().mkdir(path)
          yield* reply(257, `${quotePath(path)} created`)
        }),
      RMD: (argument) =>
        resolve(argument).pipe(Effect.tap((p) => access().write(p)), Effect.flatMap((p) => jail().rmdir(p)), Effect.andThen(reply(250, "Directory removed"))),
      DELE: (argument) =>
        resolve(argument).pipe(Effect.tap((p) => access().write(p)), Effect.flatMap((p) => jail().remove(p)), Effect.andThen(reply(250, "File removed"))),
      RNFR: (argument) =>
        Effect.gen(function*() {
          const path = yield* resolve(argument)
          yield* access().write(path)
          yield* jail().lstat(path)
          state.renameFrom = path
          yield* reply(350, "Ready for RNTO")
        }),
      RNTO: (argument) =>
        Effect.gen(function*() {
          const from = state.renameFrom
          state.renameFrom = undefined
          if (!from) return yield* Effect.fail(refuse("BadSequence"))
          const to = yield* resolve(argument)
          yield* access().write(to)
          yield* jail().rename(from, to, { overwrite: true })
          if (isTemporary(options, from) && !isTemporary(options, to)) {
            const stat = yield* Effect.result(jail().lstat(to))
            if (Result.isSuccess(stat) && stat.success.type === "file") yield* announce(to, stat.success.size)
          }
          yield* reply(250, "Rename successful")
        }),
      SIZE: (argument) =>
        Effect.gen(function*() {
          const stat = yield* jail().stat(yield* resolve(argument))
          if (stat.type !== "file") return yield* Effect.fail(refuse("NotAFile"))
          yield* reply(213, String(stat.size))
        }),
      MDTM: (argument) =>
        Effect.gen(function*() {
          const stat = yield* jail().stat(yield* resolve(argument))
          yield* reply(213, formatMdtm(stat.mtimeMs))
        }),
      MFMT: (argument) =>
        Effect.gen(function*() {
          const space = argument.indexOf(" ")
          const time = space > 0 ? parseMfmtTime(argument.slice(0, space)) : undefined
          if (time === undefined) return yield* Effect.fail(refuse("SyntaxError"))
          const path = yield* resolve(argument.slice(space + 1))
          yield* access().setAttributes(path, { mtimeMs: time })
          const stat = yield* jail().stat(path)
          yield* jail().setAttributes(path, { atimeMs: stat.atimeMs, mtimeMs: time })
          yield* reply(213, `Modify=${formatMdtm(time)}; ${VirtualPath.basename(path)}`)
        }),
      MLST: (argument) =>
        Effect.gen(function*() {
          const path = yield* resolve(argument)
          const stat = yield* jail().stat(path)
          const perms = { canRead: state.principal!.canRead, canWrite: state.principal!.canWrite }
          yield* reply(250, ["Listing", ` ${formatMlsxFacts(VirtualPath.basename(path), stat, { ...perms, pathForMlst: path })}`, "End"])
        }),
      REST: (argument) =>
        Effect.gen(function*() {
          if (!/^\d{1,15}$/.test(argument)) return yield* Effect.fail(refuse("SyntaxError"))
          state.rest = Number(argument)
          yield* reply(350, `Restarting at ${state.rest}`)
        }),
      ALLO: (argument) =>
        Effect.gen(function*() {
          const match = /^(\d{1,15})(\s+R\s+\d{1,15})?$/i.exec(argument)
          if (!match) return yield* Effect.fail(refuse("SyntaxError"))
          state.allo = Number(match[1])
          yield* reply(200, "ALLO noted")
        }),
      PASV: () => (state.epsvAll ? Effect.fail(refuse("BadSequence")) : preparePassive(false)),
      EPSV: (argument) => {
        if (/^ALL$/i.test(argument)) {
          state.epsvAll = true
          return reply(200, "EPSV ALL ok")
        }
        return argument === "" || argument === "1" || argument === "2" ? preparePassive(true) : Effect.fail(refuse("UnsupportedParameter"))
      },
      PORT: (argument, verb) => prepareActive(verb, DataChannel.parsePort(argument)),
      EPRT: (argument, verb) => prepareActive(verb, DataChannel.parseEprt(argument)),
      RETR: (argument, verb) => retrieve(verb, argument).pipe(Effect.flatMap((transfer) => startTransfer(transfer))),
      STOR: (argument) => store("STOR", argument).pipe(Effect.flatMap((transfer) => startTransfer(transfer))),
      APPE: (argument) => store("APPE", argument).pipe(Effect.flatMap((transfer) => startTransfer(transfer))),
      STOU: (argument) => store("STOU", argument).pipe(Effect.flatMap((transfer) => startTransfer(transfer))),
      LIST: (argument) => listing("LIST", argument).pipe(Effect.flatMap((transfer) => startTransfer(transfer))),
      NLST: (argument) => listing("NLST", argument).pipe(Effect.flatMap((transfer) => startTransfer(transfer))),
      MLSD: (argument) => listing("MLSD", argument).pipe(Effect.flatMap((transfer) => startTransfer(transfer))),
      ABOR: () => reply(225, "No transfer to abort"),
      STAT: (argument) =>
        argument === ""
          ? reply(211, ["Portcullis FTP status", ` Logged in: ${loggedIn() ? "yes" : "no"}`, ` TLS: ${control.isTls() ? "yes" : "no"}`, "End"])
          : Effect.fail(refuse("UnsupportedParameter")),
      SITE: () => Effect.fail(refuse("Unsupported")),
      REIN: () => Effect.fail(refuse("Unsupported"))
    }
    for (const [alias, verb] of [["XPWD", "PWD"], ["XCWD", "CWD"], ["XCUP", "CDUP"], ["XMKD", "MKD"], ["XRMD", "RMD"]] as const) {
      commands[alias] = commands[verb]!
    }

    const abort = Effect.gen(function*() {
      const transfer = state.transfer
      if (!transfer) return yield* reply(225, "No transfer to abort")
      yield* Fiber.interrupt(transfer)
      yield* reply(226, "ABOR successful")
    })

    const dispatch = (line: string) =>
      Effect.gen(function*() {
        yield* session.touch
        const parsed = parseCommand(line)
        if (Result.isFailure(parsed)) return yield* fail("", parsed.failure)
        const { argument, verb } = parsed.success
        const handler = commands[verb]
        if (!handler) return yield* fail(verb, refuse("Unsupported"))
        if (state.transfer) {
          if (verb === "ABOR") return yield* abort
          if (verb === "QUIT") yield* Fiber.interrupt(state.transfer)
          else if (!duringTransfer.has(verb)) return yield* fail(verb, refuse("TransferInProgress"))
        }
        if (!loggedIn() && !beforeLogin.has(verb)) return yield* fail(verb, refuse("NotLoggedIn"))
        // RNTO must come right after RNFR: every other command forgets the pending rename.
        if (verb !== "RNTO") state.renameFrom = undefined
        yield* handler(argument, verb).pipe(
          Effect.catch((error: Failure) => (error._tag === "FtpRefusal" && error.reason === "Quit" ? Effect.fail(error) : fail(verb, error)))
        )
      })

    // Shutdown: leave as soon as no transfer runs (the current one may finish).
    const drained = Effect.gen(function*() {
      yield* session.draining
      while (state.transfer) yield* Fiber.await(state.transfer)
      yield* reply(421, "Server shutting down")
    })

    yield* reply(220, "Portcullis FTP server ready")
    const loop = Effect.forever(control.nextLine.pipe(Effect.flatMap(dispatch)))
    const outcome = yield* Effect.exit(Effect.raceFirst(loop, drained))
    yield* dropData
    if (state.transfer) yield* Fiber.interrupt(state.transfer)
    if (Exit.isFailure(outcome) && !Cause.hasInterruptsOnly(outcome.cause)) {
      const error = Cause.squash(outcome.cause)
      const quit = typeof error === "object" && error !== null && "reason" in error && error.reason === "Quit"
      if (!quit) yield* Effect.logDebug("FTP session ended", error)
    }
    // Let the last reply leave before the socket closes. A socket destroyed after it
    // ended but before it finished (the client left during AUTH TLS) never calls
    // end's callback: its 'close' ends the wait too.
    yield* Effect.callback<void>((resume) => {
      const socket = control.socket()
      if (socket.destroyed) return resume(Effect.void)
      socket.once("close", () => resume(Effect.void))
      socket.end(() => resume(Effect.void))
    })
  })
