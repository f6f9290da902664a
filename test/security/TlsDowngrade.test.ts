/**
 * Checklist C, downgrade attempts on FTPS control connections of a real server
 * with TLS required (the default): a client offering only TLS 1.0/1.1, or an
 * ALPN protocol other than "ftp" (ALPACA, CVE-2021-3618), fails the handshake on
 * AUTH TLS and on the implicit port; PROT C after PROT P is refused and a data
 * connection in clear then carries no file byte either way; AUTH SSL and
 * AUTH TLS-C are AUTH TLS with the same rules, other mechanisms are 504; REIN
 * is 502 and leaves the protected session as it was.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Option, Queue, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as tls from "node:tls"
import { Events, type UploadCompleted } from "../../src/services/Events.js"
import { connect, type FtpRawClient, ftpTestServer, openData, parsePasvReply } from "../utils/FtpRawClient.js"

type Handshake =
  | { readonly ok: true; readonly protocol: string | null; readonly alpn: string | false | null }
  | { readonly ok: false; readonly code: string }

/** A TLS client handshake with `options`: what was negotiated, or the error code. */
const handshake = (options: tls.ConnectionOptions) =>
  Effect.callback<Handshake>((resume) => {
    const socket = tls.connect({ servername: "localhost", ...options })
    socket.once("secureConnect", () => {
      resume(Effect.succeed({ ok: true, protocol: socket.getProtocol(), alpn: socket.alpnProtocol }))
      socket.destroy()
    })
    socket.once("error", (error: Error & { code?: string }) => {
      resume(Effect.succeed({ ok: false, code: error.code ?? error.message }))
      socket.destroy()
    })
  })

/** What a TLS 1.0/1.1-only client offers (OpenSSL 3 needs security level 0 to offer them at all). */
const legacyOnly: tls.ConnectionOptions = { minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" }

/** AUTH TLS (234), then a handshake of our own on the same socket. */
const explicitHandshake = (client: FtpRawClient, options: tls.ConnectionOptions, verb = "AUTH TLS") =>
  client.expect(verb, 234).pipe(Effect.andThen(handshake({ socket: client.raw, ...options })))

const uploadsOf = (context: Context.Context<Events>) =>
  Effect.gen(function*() {
    const stream: Stream.Stream<UploadCompleted> = yield* Context.get(context, Events).subscribeUploads
    return yield* Stream.toQueue(stream, { capacity: "unbounded" })
  })

describe("C.tls (checklist C: FTPS downgrade attempts)", () => {
  it.effect("C.tls: a client offering only TLS 1.0/1.1 is refused on AUTH TLS and on the implicit port, and nothing is served in clear afterwards", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const ca = fs.readFileSync(server.certFile)

      const explicit = yield* connect(server.ftpPort, { ca })
      const refused = yield* explicitHandshake(explicit, { ca, ...legacyOnly })
      assert.isFalse(refused.ok, JSON.stringify(refused))
      // The server drops the connection: no plaintext command is read after a failed AUTH TLS.
      yield* explicit.write("USER alice\r\nPASS alice-password\r\n")
      yield* explicit.closed
      assert.notInclude(explicit.transcript(), "230")

      const implicit = yield* handshake({ host: "127.0.0.1", port: server.ftpsPort, ca, ...legacyOnly })
      assert.isFalse(implicit.ok, JSON.stringify(implicit))

      // TLS 1.2 and 1.3 are served, on both.
      for (const maxVersion of ["TLSv1.2", "TLSv1.3"] as const) {
        const modern = yield* explicitHandshake(yield* connect(server.ftpPort, { ca }), { ca, maxVersion })
        assert.deepStrictEqual(modern, { ok: true, protocol: maxVersion, alpn: false })
        const direct = yield* handshake({ host: "127.0.0.1", port: server.ftpsPort, ca, maxVersion })
        assert.deepStrictEqual(direct, { ok: true, protocol: maxVersion, alpn: false })
      }
    }))

  it.effect("C.tls: an ALPN protocol other than \"ftp\" is refused on the control connection, AUTH TLS and implicit (ALPACA, CVE-2021-3618)", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const ca = fs.readFileSync(server.certFile)
      for (const protocols of [["http/1.1"], ["h2", "http/1.1"], ["imap"], ["smtp"]]) {
        const explicit = yield* connect(server.ftpPort, { ca })
        const viaAuth = yield* explicitHandshake(explicit, { ca, ALPNProtocols: protocols })
        assert.deepStrictEqual(viaAuth, { ok: false, code: "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL" }, protocols.join(","))
        yield* explicit.closed
        const implicit = yield* handshake({ host: "127.0.0.1", port: server.ftpsPort, ca, ALPNProtocols: protocols })
        assert.deepStrictEqual(implicit, { ok: false, code: "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL" }, protocols.join(","))
      }
      // "ftp" among others, or no ALPN at all, is fine.
      const ftp = yield* explicitHandshake(yield* connect(server.ftpPort, { ca }), { ca, ALPNProtocols: ["http/1.1", "ftp"] })
      assert.isTrue(ftp.ok && ftp.alpn === "ftp", JSON.stringify(ftp))
      const none = yield* handshake({ host: "127.0.0.1", port: server.ftpsPort, ca })
      assert.isTrue(none.ok, JSON.stringify(none))
    }))

  it.effect("C.prot: with TLS required, PROT C after PROT P is 534 and a data connection in clear carries no file byte: RETR gets nothing, STOR in clear is neither stored nor announced", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const ca = fs.readFileSync(server.certFile)
      const root = server.roots["alice"]!
      fs.writeFileSync(path.join(root, "confidential.txt"), "TOP-SECRET-CONTENTS")
      const events = yield* uploadsOf(server.context)
      const client = yield* connect(server.ftpPort, { ca })
      yield* client.secureLogin("alice")
      yield* client.expect("PROT C", 534)
      yield* client.expect("CCC", 534)

      // RETR: the data connection stays in clear (no ClientHello); the file must not come through.
      const port = parsePasvReply(yield* client.expect("PASV", 227))!.port
      const data = yield* openData(port, { allowHalfOpen: true })
      yield* data.connected
      const retr = yield* client.command("RETR confidential.txt")
      data.socket.write("GET / HTTP/1.0\r\n\r\n")
      data.socket.end()
      const final = retr.code === 150 ? yield* client.reply : retr
      const received = (yield* data.done).toString("latin1")
      assert.notInclude(received, "TOP-SECRET", "file contents went over a clear data connection")
      assert.notStrictEqual(final.code, 226, final.text)

      // STOR: plaintext file bytes on a clear data connection.
      const storPort = parsePasvReply(yield* client.expect("PASV", 227))!.port
      const stor = yield* client.command("STOR plain.txt")
      if (stor.code === 150) {
        const upload = yield* openData(storPort)
        upload.socket.end("PLAINTEXT-UPLOAD")
        yield* upload.closed
        const storFinal = yield* client.reply
        assert.notStrictEqual(storFinal.code, 226, storFinal.text)
      } else assert.isAtLeast(stor.code, 400, stor.text)
      const stored = fs.existsSync(path.join(root, "plain.txt")) ? fs.readFileSync(path.join(root, "plain.txt"), "utf8") : ""
      assert.notInclude(stored, "PLAINTEXT")
      assert.isTrue(Option.isNone(yield* Queue.poll(events)), "no upload was announced")

      // The session is still protected and usable: a PROT P transfer with its own TLS session works.
      yield* client.expect("NOOP", 200)
      const again = parsePasvReply(yield* client.expect("PASV", 227))!.port
      yield* client.expect("RETR confidential.txt", 150)
      const secure = yield* openData(again, { tls: { ca, session: client.session() } })
      assert.strictEqual((yield* secure.done).toString(), "TOP-SECRET-CONTENTS")
      yield* client.expectReply(226)
    }))

  it.effect("C.auth: AUTH SSL and AUTH TLS-C upgrade like AUTH TLS and keep its rules (PBSZ/PROT P before data); AUTH TLS-P, GSSAPI, KERBEROS_V4 and unknown mechanisms are 504", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const ca = fs.readFileSync(server.certFile)
      fs.writeFileSync(path.join(server.roots["alice"]!, "f.txt"), "file bytes")
      for (const verb of ["AUTH SSL", "AUTH TLS-C", "auth tls", "AUTH ssl"]) {
        const client = yield* connect(server.ftpPort, { ca })
        yield* client.expect(verb, 234)
        yield* client.upgrade
        assert.isTrue(client.isTls(), verb)
        // Still clear data until PBSZ and PROT P, so no transfer yet: AUTH SSL does not imply PROT P here.
        yield* client.login("alice")
        yield* client.expect("PASV", 227)
        yield* client.expect("RETR f.txt", 534)
        yield* client.expect("PBSZ 0", 200)
        yield* client.expect("PROT P", 200)
        const port = parsePasvReply(yield* client.expect("PASV", 227))!.port
        yield* client.expect("RETR f.txt", 150)
        const data = yield* openData(port, { tls: { ca, session: client.session() } })
        assert.strictEqual((yield* data.done).toString(), "file bytes", verb)
        yield* client.expectReply(226)
      }
      const other = yield* connect(server.ftpPort, { ca })
      for (const line of ["AUTH TLS-P", "AUTH GSSAPI", "AUTH KERBEROS_V4", "AUTH", "AUTH TLS1.3", "AUTH SSLv3", "AUTH TLS TLS"]) {
        yield* other.expect(line, 504)
      }
      // Nothing was upgraded: the connection is still clear, and TLS is still required to log in.
      assert.isFalse(other.isTls())
      yield* other.expect("USER alice", 534)
    }))

  it.effect("C.rein: REIN is 502 after a protected login and changes nothing: still logged in, PROT P kept, TLS kept", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const ca = fs.readFileSync(server.certFile)
      fs.writeFileSync(path.join(server.roots["alice"]!, "f.txt"), "after rein")
      const client = yield* connect(server.ftpPort, { ca })
      yield* client.secureLogin("alice")
      yield* client.expect("REIN", 502)
      yield* client.expect("PWD", 257)
      assert.isTrue(client.isTls())
      const port = parsePasvReply(yield* client.expect("PASV", 227))!.port
      yield* client.expect("RETR f.txt", 150)
      const data = yield* openData(port, { tls: { ca, session: client.session() } })
      assert.strictEqual((yield* data.done).toString(), "after rein")
      yield* client.expectReply(226)
      // REIN before login too: the pre-TLS state is not reset by it either (there is none to keep).
      const fresh = yield* connect(server.ftpPort, { ca })
      yield* fresh.startTls
      yield* fresh.expect("REIN", 530)
      yield* fresh.expect("PBSZ 0", 200)
    }))
})
