/**
 * docs/config.md, generated from the config Schema: every field's path and type
 * come from the Schema's JSON Schema, every default from decoding a minimal
 * config, and only the prose comes from the table below. Rendering fails when a
 * field has no description (or a description has no field), and a test compares
 * docs/config.md with the rendering, so the reference cannot drift.
 */
import { Effect, Schema } from "effect"
import { decodeConfig, ServerConfig } from "./Config.js"
import { environmentOverrides } from "./Environment.js"

const descriptions: Readonly<Record<string, string>> = {
  "sftp": "The SFTP listener. Absent: SFTP is off.",
  "sftp.address": "Where SFTP listens, `host:port` or `[v6]:port`; port 0 binds a free port.",
  "sftp.hostKeyFiles": "Private host keys (ed25519, ecdsa, rsa; OpenSSH or PEM). Absent: an ephemeral ed25519 key, with a warning that clients will see a new key after every restart.",
  "sftp.kex": "Key-exchange algorithms to offer, in order. Empty: modern defaults (curve25519, ECDH, DH group exchange/14/16/18 with SHA-2). An unknown name is a config error.",
  "sftp.ciphers": "Ciphers to offer. Empty: AES-GCM, ChaCha20-Poly1305, AES-CTR (no CBC, no 3DES).",
  "sftp.macs": "MACs to offer. Empty: HMAC-SHA2-256/512 (ETM first); no SHA-1, no MD5.",
  "sftp.publicKeyAlgorithms": "Signature algorithms accepted for user public keys. Empty: ssh-ed25519, ecdsa-sha2-*, rsa-sha2-512, rsa-sha2-256 (no ssh-rsa/SHA-1, no DSA).",
  "sftp.handshakeTimeout": "From TCP accept until authenticated; a zero duration disables it.",
  "ftp": "The FTP/FTPS listeners. Absent: FTP is off.",
  "ftp.address": "Where FTP (with explicit TLS through AUTH TLS) listens.",
  "ftp.passivePorts": "Range of passive data ports, `low-high` within 1024–65535; each PASV/EPSV picks one at random.",
  "ftp.passiveAddress": "Address announced in PASV replies (behind NAT). Absent: the control connection's local address.",
  "ftp.dataAcceptTimeout": "How long a passive listener waits for the client's data connection.",
  "ftp.allowActiveMode": "Allow PORT/EPRT, and then only to the control connection's IP on a port ≥ 1024.",
  "ftp.requireTLS": "Refuse USER/PASS before AUTH TLS and every data command without PROT P. Needs `tls`.",
  "ftp.requireSessionReuse": "Every TLS data connection must resume the TLS session of its own control connection (defeats passive-port stealing). Turn off only for clients that cannot resume (Python's ftplib); a warning is logged.",
  "ftp.implicitTLSAddress": "Where implicit FTPS (TLS from the first byte) listens. Absent: off. Needs `tls`.",
  "ftp.tls": "The certificate for FTPS. Without it AUTH TLS is not offered. Reloaded on SIGHUP.",
  "ftp.tls.certFile": "PEM certificate (chain).",
  "ftp.tls.keyFile": "PEM private key matching `certFile`.",
  "allowChown": "Let clients change owner and group (SFTP SETSTAT). Applies to both protocols.",
  "allowChtimes": "Let clients set access and modification times (SFTP SETSTAT, FTP MFMT). Applies to both protocols.",
  "idleTimeout": "An authenticated session with no activity for this long is closed (FTP answers 421 first); zero disables it.",
  "shutdownTimeout": "On SIGTERM/SIGINT, how long sessions may finish before the rest are interrupted.",
  "tempExtensions": "Uploads to names with these suffixes are announced only once renamed to a final name.",
  "maxPreAuthConnections": "Connections not authenticated yet, SFTP and FTP counted together (OpenSSH MaxStartups). Over the cap a new connection is closed at once (SFTP: before the SSH identification; FTP: after `421 Too many connections, try again later`). A connection leaves the count when it logs in or closes; authenticated sessions never count. 0: no cap.",
  "maxPreAuthConnectionsPerIp": "The same cap per client IP (OpenSSH PerSourceMaxStartups). 0: no cap.",
  "bans": "Bans per client IP after repeated login failures, shared by SFTP and FTP. A failure is a rejected password, an unknown or disabled user, or a refused signed public key (not a key query). A banned IP's new connections are closed at accept (FTP: 421 first) and its unauthenticated ones are refused further attempts; its authenticated sessions stay. Logged as `{\"event\":\"client_banned\",\"clientIp\",\"until\"}`.",
  "bans.maxFailures": "Failures within `window` that ban the IP. 0: bans off.",
  "bans.window": "How long a failure counts (a sliding window). A zero duration turns bans off.",
  "bans.duration": "How long a ban lasts. A zero duration turns bans off.",
  "users": "An inline list of users, or `{ \"sqlite\": path }` for the store that `portcullis user` manages. Inline users are reloaded on SIGHUP.",
  "users.sqlite": "SQLite database file of the user store (created 0600 if missing; only password hashes are stored).",
  "users[].username": "1–64 bytes of UTF-8; no `/`, `\\`, `..` or control characters.",
  "users[].password": "Plaintext password, hashed with argon2id when loaded (never stored). Empty passwords are refused.",
  "users[].passwordHash": "Instead of `password`: an argon2id, bcrypt (`$2a$`/`$2b$`/`$2y$`) or sha512-crypt (`$6$`) hash.",
  "users[].root": "Absolute host directory that becomes the user's `/`; checked at every login.",
  "users[].canRead": "May read file contents and list directories.",
  "users[].canWrite": "May create, change, rename and remove.",
  "users[].authorizedKeys": "OpenSSH public keys (`ssh-ed25519 AAAA… comment`); authorized_keys options are refused.",
  "users[].disabled": "A disabled user cannot log in."
}

interface JsonSchema {
  readonly type?: string
  readonly anyOf?: ReadonlyArray<JsonSchema>
  readonly properties?: Readonly<Record<string, JsonSchema>>
  readonly required?: ReadonlyArray<string>
  readonly items?: JsonSchema
}

interface Row {
  readonly path: string
  readonly type: string
  readonly required: boolean
  readonly value: unknown
}

const members = (schema: JsonSchema): ReadonlyArray<JsonSchema> =>
  (schema.anyOf ?? [schema]).filter((member) => member.type !== "null")

const typeName = (schema: JsonSchema): string =>
  members(schema).map((m) => (m.type === "array" ? `list of ${m.items ? typeName(m.items) : "values"}` : m.type ?? "value")).join(" or ")

const lookup = (value: unknown, path: ReadonlyArray<string>): unknown =>
  path.reduce<unknown>((at, key) => (typeof at === "object" && at !== null ? (at as Record<string, unknown>)[key] : undefined), value)

/** Every field under `schema`, depth first, with its default taken from `defaults`. */
const rows = (schema: JsonSchema, prefix: ReadonlyArray<string>, defaults: unknown, label: string): ReadonlyArray<Row> =>
  members(schema).flatMap((member) => {
    if (member.type === "array" && member.items?.properties) {
      return rows(member.items, [...prefix, "[]"], defaults, `${label}[]`)
    }
    return Object.entries(member.properties ?? {}).flatMap(([key, field]) => {
      const path = label === "" ? key : `${label}${label.endsWith("[]") ? "." : "."}${key}`
      const value = lookup(defaults, [...prefix, key])
      const own: Row = { path, type: typeName(field), required: member.required?.includes(key) ?? false, value }
      const nested = members(field).some((m) => m.properties !== undefined || m.items?.properties !== undefined)
      return nested ? [own, ...rows(field, [...prefix, key], defaults, path)] : [own]
    })
  })

const cell = (text: string) => text.replaceAll("|", "\\|")

const defaultText = (row: Row): string => {
  if (row.required) return "required"
  if (row.value === undefined) return "—"
  if (typeof row.value === "object" && row.value !== null && !Array.isArray(row.value)) return "see below"
  return `\`${JSON.stringify(row.value)}\``
}

/**
 * The Markdown of docs/config.md.
 * @category constructors
 */
export const renderConfigReference: Effect.Effect<string> = Effect.gen(function*() {
  const document = Schema.toJsonSchemaDocument(ServerConfig).schema as JsonSchema
  // Defaults, by decoding configs that give nothing but what is required.
  // (`ftp.tls` is given only because requireTLS needs it; it has no default.)
  const top = yield* decodeConfig({ sftp: {}, ftp: { tls: { certFile: "", keyFile: "" } }, users: [] }).pipe(Effect.orDie)
  const user = yield* decodeConfig({ users: [{ username: "u", root: "/" }] }).pipe(Effect.orDie)
  // `users` defaults to [], and its items' defaults are found under the key "[]".
  const users = Object.assign([], { "[]": Array.isArray(user.users) ? user.users[0] : undefined })
  const defaults = { ...top, ftp: { ...top.ftp, tls: undefined }, users }
  const all = rows(document, [], defaults, "")
  const missing = all.filter((row) => descriptions[row.path] === undefined).map((row) => row.path)
  const unknown = Object.keys(descriptions).filter((path) => !all.some((row) => row.path === path))
  if (missing.length > 0 || unknown.length > 0) {
    return yield* Effect.die(new Error(`config reference out of date: undescribed ${missing.join(", ")}; unknown ${unknown.join(", ")}`))
  }
  const table = all.map((row) => `| \`${row.path}\` | ${cell(row.type)} | ${cell(defaultText(row))} | ${cell(descriptions[row.path]!)} |`)
  const environment = Object.entries(environmentOverrides).map(([name, path]) => `| \`${name}\` | \`${path.join(".")}\` |`)
  return [
    "# Configuration reference",
    "",
    "Generated from the config Schema by `./bin/portcullis config-reference > docs/config.md`;",
    "a test fails when this file and the Schema disagree.",
    "",
    "`portcullis serve --config FILE` reads JSON. Unknown keys are errors. Durations are strings such as",
    "`\"500 millis\"`, `\"30 seconds\"` or `\"15 minutes\"`. A protocol whose section is absent is off.",
    "",
    "| Field | Type | Default | Meaning |",
    "| --- | --- | --- | --- |",
    ...table,
    "",
    "## Environment overrides",
    "",
    "Each variable replaces one field before the config is validated (with or without `--config`);",
    "booleans are `true` or `false`, counts are digits. Setting a field of a protocol section turns that protocol on.",
    "",
    "| Variable | Field |",
    "| --- | --- |",
    ...environment,
    ""
  ].join("\n")
})
