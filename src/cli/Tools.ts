/**
 * The small operator commands: `keygen`, `hash-password` and `check-config`.
 */
import { Data, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as fs from "node:fs"
import { generateSshKeyPair } from "../layers/SshKeys.js"
import * as ServerLayer from "../layers/Server.js"
import { hashPassword, isAcceptablePassword, maxPasswordBytes } from "../layers/PasswordHash.js"

/** Ends the command with `code` after printing `line` on stderr. */
export class CliExit extends Data.TaggedError("CliExit")<{ readonly code: number; readonly line: string }> {}

/** All of standard input (at most 64 KiB: a password or a key, never a stream). */
export const readStdin = Effect.callback<string, CliExit>((resume) => {
  const chunks: Array<Buffer> = []
  let size = 0
  process.stdin.on("data", (chunk: Buffer) => {
    size += chunk.length
    if (size > 64 * 1024) {
      process.stdin.destroy()
      return resume(Effect.fail(new CliExit({ code: 2, line: "standard input is larger than 64 KiB" })))
    }
    chunks.push(chunk)
  })
  process.stdin.on("end", () => resume(Effect.succeed(Buffer.concat(chunks).toString("utf8"))))
  process.stdin.on("error", () => resume(Effect.fail(new CliExit({ code: 1, line: "cannot read standard input" }))))
})

/** A password from standard input: one line, its line ending removed. */
export const passwordFromStdin = readStdin.pipe(
  Effect.map((text) => text.replace(/\r?\n$/, "")),
  Effect.filterOrFail(isAcceptablePassword, () => new CliExit({ code: 2, line: `a password must have 1 to ${maxPasswordBytes} bytes` }))
)

const keyTypes = ["ed25519", "ecdsa", "rsa"] as const

export const keygen = Command.make(
  "keygen",
  {
    hostKey: Flag.String("host-key").pipe(Flag.withDescription("file to write the private host key to (mode 0600; never overwritten)")),
    type: Flag.Literals("type", keyTypes).pipe(Flag.withDefault("ed25519"), Flag.withDescription("key type"))
  },
  ({ hostKey, type }) =>
    Effect.gen(function*() {
      const pair = generateSshKeyPair(type)
      yield* Effect.try({
        try: () => fs.writeFileSync(hostKey, pair.private, { mode: 0o600, flag: "wx" }),
        catch: (cause) => new CliExit({ code: 1, line: `cannot create ${hostKey} (${(cause as NodeJS.ErrnoException).code ?? "error"})` })
      })
      yield* Effect.sync(() => void process.stdout.write(`${pair.public}\n`))
    })
).pipe(Command.withDescription("Generate an SSH host key; prints its public key"))

export const hashPasswordCommand = Command.make(
  "hash-password",
  {},
  () =>
    passwordFromStdin.pipe(
      Effect.flatMap(hashPassword),
      Effect.flatMap((hash) => Effect.sync(() => void process.stdout.write(`${hash}\n`)))
    )
).pipe(Command.withDescription("Read a password on standard input and print its argon2id hash (for passwordHash)"))

export const checkConfig = (load: (file: Option.Option<string>) => Effect.Effect<import("../config/Config.js").ServerConfig, CliExit>) =>
  Command.make(
    "check-config",
    { config: Flag.String("config").pipe(Flag.withDescription("JSON config file to validate")) },
    ({ config }) =>
      load(Option.some(config)).pipe(
        Effect.tap((decoded) => ServerLayer.checkFiles(decoded).pipe(
          Effect.mapError((error) => new CliExit({ code: 2, line: `invalid config: ${error.message}` }))
        )),
        Effect.andThen(Effect.sync(() => void process.stdout.write("config ok\n")))
      )
  ).pipe(Command.withDescription("Validate a config file (fields and the files it names) without serving"))
