/**
 * The server's configuration: one Schema for the config file, the Effect API
 * and the Promise facade. Every key but `users` is optional; defaults are the
 * values design.md documents. A protocol whose section is absent is off.
 *
 * Decoding fails with a `ConfigError` whose message is one line naming the field
 * ("sftp.kex[1]: unsupported algorithm …"): the `portcullis` command prints it
 * and exits with status 2.
 */
import { Data, Duration, Effect, Schema } from "effect"
import { type AlgorithmKind, supported } from "../protocols/sftp/Algorithms.js"
import { parseAddress } from "./Address.js"

const withDefault = <S extends Schema.Top>(schema: S, value: S["Encoded"]) =>
  schema.pipe(Schema.withDecodingDefault(Effect.succeed(value)))

/** A duration such as "500 millis", "30 seconds" or "15 minutes". */
const DurationString = Schema.String.check(
  Schema.makeFilter((s: string) =>
    Duration.fromInput(s as Duration.Input)._tag === "Some" ? undefined : "expected a duration such as \"30 seconds\""
  )
)

/** "host:port"; port 0 binds a free port. */
const AddressString = Schema.String.check(
  Schema.makeFilter((s: string) => (parseAddress(s) ? undefined : "expected \"host:port\" with a port from 0 to 65535"))
)

const Algorithms = (kind: AlgorithmKind) =>
  withDefault(
    Schema.Array(Schema.String).check(
      Schema.makeFilter((names: ReadonlyArray<string>) => {
        const index = names.findIndex((name) => !supported[kind].includes(name))
        return index < 0 ? undefined : { path: [index], issue: `unsupported algorithm ${JSON.stringify(names[index])}` }
      })
    ),
    []
  )

/**
 * The `sftp` section.
 * @category models
 */
export const SftpConfig = Schema.Struct({
  address: withDefault(AddressString, "127.0.0.1:2022"),
  /** Private host keys (PEM or OpenSSH format). Absent: an ephemeral ed25519 key, with a warning. */
  hostKeyFiles: Schema.optionalKey(Schema.Array(Schema.String)),
  kex: Algorithms("kex"),
  ciphers: Algorithms("ciphers"),
  macs: Algorithms("macs"),
  /** Signature algorithms accepted for public-key user authentication. */
  publicKeyAlgorithms: Algorithms("publicKeyAlgorithms"),
  handshakeTimeout: withDefault(DurationString, "30 seconds")
})

/** "low-high", both within 1024–65535. */
const PortRange = Schema.String.check(
  Schema.makeFilter((s: string) => {
    const match = /^(\d{1,5})-(\d{1,5})$/.exec(s)
    const low = Number(match?.[1]), high = Number(match?.[2])
    return match && low >= 1024 && low <= high && high <= 65535 ? undefined : "expected \"low-high\" with 1024 <= low <= high <= 65535"
  })
)

/**
 * The `ftp.tls` section: a PEM certificate (chain) and its private key.
 * @category models
 */
export const FtpTlsConfig = Schema.Struct({
  certFile: Schema.String,
  keyFile: Schema.String
})

/**
 * The `ftp` section.
 * @category models
 */
export const FtpConfig = Schema.Struct({
  address: withDefault(AddressString, "127.0.0.1:2121"),
  passivePorts: withDefault(PortRange, "50000-50100"),
  /** Address announced in PASV replies (behind NAT). Absent: the control connection's local address. */
  passiveAddress: Schema.optionalKey(Schema.String),
  dataAcceptTimeout: withDefault(DurationString, "30 seconds"),
  allowActiveMode: withDefault(Schema.Boolean, false),
  requireTLS: withDefault(Schema.Boolean, true),
  requireSessionReuse: withDefault(Schema.Boolean, true),
  /** Implicit FTPS (TLS from the first byte) on its own address; off unless given. */
  implicitTLSAddress: Schema.optionalKey(AddressString),
  tls: Schema.optionalKey(FtpTlsConfig)
}).check(
  Schema.makeFilter((ftp: { readonly requireTLS: boolean; readonly tls?: unknown; readonly implicitTLSAddress?: string }) => {
    if (ftp.tls !== undefined) return undefined
    if (ftp.requireTLS) return { path: ["tls"], issue: "required when requireTLS is true" }
    if (ftp.implicitTLSAddress !== undefined) return { path: ["tls"], issue: "required with implicitTLSAddress" }
    return undefined
  })
)

/**
 * One user of the `users` list.
 * @category models
 */
export const UserConfig = Schema.Struct({
  username: Schema.String,
  password: Schema.optionalKey(Schema.String),
  passwordHash: Schema.optionalKey(Schema.String),
  root: Schema.String,
  canRead: withDefault(Schema.Boolean, true),
  canWrite: withDefault(Schema.Boolean, true),
  authorizedKeys: Schema.optionalKey(Schema.Array(Schema.String)),
  disabled: withDefault(Schema.Boolean, false)
})

/** A count where 0 means "no limit" (or "off"). */
const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

/**
 * The `bans` section: per-client-IP bans after repeated login failures, SFTP and FTP together.
 * @category models
 */
export const BansConfig = Schema.Struct({
  /** Rejected credentials within `window` that ban an IP; 0 turns bans off. */
  maxFailures: withDefault(Count, 10),
  window: withDefault(DurationString, "1 minute"),
  duration: withDefault(DurationString, "15 minutes")
})

/**
 * The whole configuration.
 * @category models
 */
export const ServerConfig = Schema.Struct({
  sftp: Schema.optionalKey(SftpConfig),
  ftp: Schema.optionalKey(FtpConfig),
  allowChown: withDefault(Schema.Boolean, false),
  allowChtimes: withDefault(Schema.Boolean, false),
  idleTimeout: withDefault(DurationString, "15 minutes"),
  shutdownTimeout: withDefault(DurationString, "30 seconds"),
  /** Uploads to names ending so are not announced until renamed to a final name. */
  tempExtensions: withDefault(Schema.Array(Schema.String), [".tmp", ".writing"]),
  /** Connections not authenticated yet, SFTP and FTP together (OpenSSH MaxStartups); 0: no cap. */
  maxPreAuthConnections: withDefault(Count, 256),
  /** The same, per client IP (OpenSSH PerSourceMaxStartups); 0: no cap. */
  maxPreAuthConnectionsPerIp: withDefault(Count, 32),
  bans: withDefault(BansConfig, {}),
  /** An inline list, or `{ "sqlite": "path" }` for the persistent store the `user` commands manage. */
  users: withDefault(Schema.Union([Schema.Array(UserConfig), Schema.Struct({ sqlite: Schema.String })]), [])
})

/**
 * A decoded configuration.
 * @category models
 */
export type ServerConfig = typeof ServerConfig.Type

/**
 * What a configuration may be written as (every default left out).
 * @category models
 */
export type ServerConfigInput = typeof ServerConfig.Encoded

/**
 * An invalid configuration. `message` is one line: the field, then what is wrong.
 * @category errors
 */
export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly field: string
  readonly problem: string
}> {
  override get message(): string {
    return this.field ? `${this.field}: ${this.problem}` : this.problem
  }
}

/** Turns Schema's `at ["users"][0]["root"]` into `users[0].root`. */
const fieldOf = (at: string): string =>
  Array.from(at.matchAll(/\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]/g), (m, i) =>
    m[2] !== undefined ? `[${m[2]}]` : i === 0 ? m[1]! : `.${m[1]!}`
  ).join("")

const toConfigError = (error: Schema.SchemaError): ConfigError => {
  const lines = error.message.split("\n")
  const at = lines.find((line) => line.trim().startsWith("at "))
  const problem = lines.filter((line) => line !== at).map((line) => line.trim()).join("; ")
  return new ConfigError({ field: at ? fieldOf(at) : "", problem })
}

/**
 * Decodes and validates a configuration; unknown keys are errors (a typo must
 * not silently fall back to a default).
 * @category constructors
 */
export const decodeConfig = (input: unknown): Effect.Effect<ServerConfig, ConfigError> =>
  Schema.decodeUnknownEffect(ServerConfig)(input, { onExcessProperty: "error" }).pipe(Effect.mapError(toConfigError))

/**
 * A duration field of a decoded config as a Duration (the schema already checked it parses).
 * @category constructors
 */
export const durationOf = (field: string): Duration.Duration => Duration.fromInputUnsafe(field as Duration.Input)
