/**
 * `portcullis user …`: manage the users of the SQLite store while the server
 * runs. Changes apply at the next login; removing a user here does not end the
 * sessions that user already has on a running server (restart it, or remove the
 * user through the API with `endSessions`, for that).
 *
 * The store is `--db` (default `var/portcullis.db`, the one `serve` uses without
 * a config), or the `users.sqlite` of `--config FILE`.
 */
import { Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { decodeConfig } from "../config/Config.js"
import type { UserError, UserInfo, UserRegistry } from "../services/UserRegistry.js"
import { CliExit, passwordFromStdin } from "./Tools.js"
import { withUserStore } from "./UserStore.js"

const print = (text: string) => Effect.sync(() => void process.stdout.write(`${text}\n`))

const shared = {
  db: Flag.String("db").pipe(Flag.withDefault("var/portcullis.db"), Flag.withDescription("SQLite user store")),
  config: Flag.String("config").pipe(Flag.optional, Flag.withDescription("use the users.sqlite store of this config file instead of --db"))
}

export const user = Command.make("user").pipe(
  Command.withSharedFlags(shared),
  Command.withDescription("Manage users of the SQLite store (changes apply at the next login)")
)

/** The database file the command works on. */
const database = Effect.gen(function*() {
  const { config, db } = yield* user
  if (Option.isNone(config)) {
    // Like `serve`, the first command may run before ./var exists.
    fs.mkdirSync(path.dirname(path.resolve(db)), { recursive: true, mode: 0o700 })
    return db
  }
  const text = yield* Effect.try({
    try: () => fs.readFileSync(config.value, "utf8"),
    catch: () => new CliExit({ code: 2, line: `invalid config: --config: cannot read ${config.value}` })
  })
  const json = yield* Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: () => new CliExit({ code: 2, line: `invalid config: ${config.value} is not valid JSON` })
  })
  const decoded = yield* decodeConfig(json).pipe(Effect.mapError((e) => new CliExit({ code: 2, line: `invalid config: ${e.message}` })))
  if (!("sqlite" in decoded.users)) return yield* new CliExit({ code: 2, line: "invalid config: users: not a { \"sqlite\": path } store" })
  return decoded.users.sqlite
})

const userFailure = (error: UserError) => new CliExit({ code: 1, line: error.message })

/** Runs `use` on the store, with clear one-line errors. */
const onStore = <A>(use: (registry: UserRegistry["Service"]) => Effect.Effect<A, UserError | CliExit>) =>
  Effect.gen(function*() {
    const file = yield* database
    return yield* withUserStore(file, (registry) => use(registry).pipe(Effect.mapError((e) => (e._tag === "UserError" ? userFailure(e) : e)))).pipe(
      Effect.mapError((e) => (e._tag === "UserStoreError" ? new CliExit({ code: 1, line: `user store: ${e.message}` }) : e))
    )
  })

const username = Argument.String("name").pipe(Argument.withDescription("username"))
const passwordStdin = Flag.Boolean("password-stdin").pipe(Flag.withDefault(false), Flag.withDescription("read the password from standard input"))
const generatePassword = Flag.Boolean("generate-password").pipe(Flag.withDefault(false), Flag.withDescription("generate a password and print it once"))

/** The password the flags ask for: from stdin, generated (printed once the change is stored), or none. */
const chosenPassword = (fromStdin: boolean, generate: boolean) =>
  Effect.gen(function*() {
    if (fromStdin && generate) return yield* new CliExit({ code: 2, line: "give --password-stdin or --generate-password, not both" })
    if (fromStdin) return Option.some({ password: yield* passwordFromStdin, generated: false })
    if (generate) return Option.some({ password: crypto.randomBytes(18).toString("base64url"), generated: true })
    return Option.none<{ readonly password: string; readonly generated: boolean }>()
  })

const announcePassword = (chosen: Option.Option<{ readonly password: string; readonly generated: boolean }>) =>
  Option.isSome(chosen) && chosen.value.generated ? print(`password: ${chosen.value.password}`) : Effect.void

const readKeys = (file: string) =>
  Effect.try({
    try: () => fs.readFileSync(file, "utf8").split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#")),
    catch: () => new CliExit({ code: 2, line: `cannot read key file ${file}` })
  })

const add = Command.make(
  "add",
  {
    name: username,
    root: Flag.String("root").pipe(Flag.withDescription("the user's root directory (must exist)")),
    passwordStdin,
    generatePassword,
    readOnly: Flag.Boolean("read-only").pipe(Flag.withDefault(false), Flag.withDescription("may read and list, not change")),
    writeOnly: Flag.Boolean("write-only").pipe(Flag.withDefault(false), Flag.withDescription("may upload and change, not read or list")),
    key: Flag.String("key").pipe(Flag.optional, Flag.withDescription("file of OpenSSH public keys (one per line)"))
  },
  ({ generatePassword, key, name, passwordStdin, readOnly, root, writeOnly }) =>
    Effect.gen(function*() {
      if (readOnly && writeOnly) return yield* new CliExit({ code: 2, line: "give --read-only or --write-only, not both" })
      const absolute = path.resolve(root)
      if (!fs.existsSync(absolute) || !fs.statSync(absolute).isDirectory()) {
        return yield* new CliExit({ code: 2, line: `--root: ${absolute} is not an existing directory` })
      }
      const password = yield* chosenPassword(passwordStdin, generatePassword)
      const keys = Option.isSome(key) ? yield* readKeys(key.value) : []
      if (Option.isNone(password) && keys.length === 0) {
        return yield* new CliExit({ code: 2, line: "give a password (--password-stdin or --generate-password) or --key" })
      }
      yield* onStore((registry) =>
        registry.addUser({
          username: name,
          root: absolute,
          canRead: !writeOnly,
          canWrite: !readOnly,
          ...(Option.isSome(password) ? { password: password.value.password } : {}),
          authorizedKeys: keys
        })
      )
      yield* print(`added ${name}`)
      yield* announcePassword(password)
    })
).pipe(Command.withDescription("Add a user"))

const flag = (value: boolean) => (value ? "yes" : "no")

const table = (users: ReadonlyArray<UserInfo>) => {
  const rows = [["USERNAME", "READ", "WRITE", "PASSWORD", "KEYS", "DISABLED", "ROOT"]].concat(
    users.map((u) => [u.username, flag(u.canRead), flag(u.canWrite), flag(u.hasPassword), String(u.authorizedKeys.length), flag(u.disabled), u.root])
  )
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join("  ")).join("\n")
}

const list = Command.make(
  "list",
  { json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("machine-readable output")) },
  ({ json }) =>
    onStore((registry) => registry.list).pipe(
      Effect.flatMap((users) => print(json ? JSON.stringify(users) : table(users)))
    )
).pipe(Command.withDescription("List users"))

const show = Command.make(
  "show",
  { name: username, json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("machine-readable output")) },
  ({ json, name }) =>
    onStore((registry) => registry.get(name)).pipe(
      Effect.flatMap((u) =>
        print(json ? JSON.stringify(u) : [
          `username: ${u.username}`,
          `root:     ${u.root}`,
          `read:     ${flag(u.canRead)}`,
          `write:    ${flag(u.canWrite)}`,
          `password: ${flag(u.hasPassword)}`,
          `disabled: ${flag(u.disabled)}`,
          ...u.authorizedKeys.map((k) => `key:      ${k}`)
        ].join("\n"))
      )
    )
).pipe(Command.withDescription("Show one user"))

const remove = Command.make("remove", { name: username }, ({ name }) =>
  onStore((registry) => registry.removeUser(name)).pipe(Effect.andThen(print(`removed ${name}`)))
).pipe(Command.withDescription("Remove a user"))

const passwd = Command.make(
  "passwd",
  { name: username, passwordStdin, generatePassword },
  ({ generatePassword, name, passwordStdin }) =>
    Effect.gen(function*() {
      const password = yield* chosenPassword(passwordStdin, generatePassword)
      if (Option.isNone(password)) return yield* new CliExit({ code: 2, line: "give --password-stdin or --generate-password" })
      yield* onStore((registry) => registry.updateUser(name, { password: password.value.password }))
      yield* print(`password of ${name} changed`)
      yield* announcePassword(password)
    })
).pipe(Command.withDescription("Set a user's password"))

const toggle = (enable: boolean) =>
  Command.make(enable ? "enable" : "disable", { name: username }, ({ name }) =>
    onStore((registry) => registry.updateUser(name, { disabled: !enable })).pipe(
      Effect.andThen(print(`${enable ? "enabled" : "disabled"} ${name}`))
    )
  ).pipe(Command.withDescription(enable ? "Allow a disabled user to log in again" : "Refuse a user's logins without removing it"))

const keyFile = Argument.String("file").pipe(Argument.withDescription("file with one OpenSSH public key"))

const keyAdd = Command.make("add", { name: username, file: keyFile }, ({ file, name }) =>
  Effect.gen(function*() {
    const keys = yield* readKeys(file)
    yield* onStore((registry) => Effect.forEach(keys, (k) => registry.addUserKey(name, k), { discard: true }))
    yield* print(`added ${keys.length} key(s) to ${name}`)
  })
).pipe(Command.withDescription("Add public keys to a user"))

const keyRemove = Command.make("remove", { name: username, file: keyFile }, ({ file, name }) =>
  Effect.gen(function*() {
    const keys = yield* readKeys(file)
    yield* onStore((registry) => Effect.forEach(keys, (k) => registry.removeUserKey(name, k), { discard: true }))
    yield* print(`removed ${keys.length} key(s) from ${name}`)
  })
).pipe(Command.withDescription("Remove public keys from a user"))

const key = Command.make("key").pipe(
  Command.withDescription("Add or remove a user's public keys"),
  Command.withSubcommands([keyAdd, keyRemove])
)

/**
 * The `user` command with its subcommands.
 * @category constructors
 */
export const userCommand = user.pipe(Command.withSubcommands([add, list, show, remove, passwd, toggle(false), toggle(true), key]))
