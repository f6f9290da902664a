/**
 * The `portcullis` command (bin/portcullis runs the compiled form of this file).
 *
 * `portcullis serve --config FILE` runs a server from a JSON config. Output is
 * JSON lines on stdout (see JsonLines.ts). Exit status: 0 after a graceful stop
 * on SIGTERM/SIGINT (which runs `shutdown(shutdownTimeout)`), 2 for an invalid
 * config (one line on stderr naming the field), 1 for anything else.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Context, Effect, Exit, FiberSet, Layer, Logger, Option, type Runtime } from "effect"
import { CliError, Command, Flag } from "effect/cli"
import * as fs from "node:fs/promises"
import { ConfigError, decodeConfig, durationOf, type ServerConfig } from "../config/Config.js"
import { renderConfigReference } from "../config/ConfigReference.js"
import { applyEnvironment } from "../config/Environment.js"
import * as ServerLayer from "../layers/Server.js"
import { Server } from "../services/Server.js"
import { loadDefaultState } from "./DefaultState.js"
import { checkConfig, CliExit, hashPasswordCommand, keygen } from "./Tools.js"
import { userCommand } from "./User.js"
import { listening, logger, printEvents, printLine } from "./JsonLines.js"

const version = "0.1.0"

const readConfig = (file: string) =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise({
      try: () => fs.readFile(file, "utf8"),
      catch: (cause) => new ConfigError({ field: "--config", problem: `cannot read ${file} (${(cause as NodeJS.ErrnoException).code ?? "error"})` })
    })
    const json = yield* Effect.try({
      try: (): unknown => JSON.parse(text),
      catch: (cause) => new ConfigError({ field: "", problem: `${file} is not valid JSON (${cause instanceof Error ? cause.message.replace(/\s+/g, " ") : "parse error"})` })
    })
    return yield* decodeConfig(applyEnvironment(json, process.env))
  })

/** Names the config field behind a startup failure where there is one. */
const startupFailure = (config: ServerConfig) => (error: ServerLayer.ServerError | ConfigError): CliExit => {
  switch (error._tag) {
    case "ConfigError":
    case "ConfigFileError":
      return new CliExit({ code: 2, line: `invalid config: ${error.message}` })
    case "UserError": {
      const index = Array.isArray(config.users) ? config.users.findIndex((u) => u.username === error.username) : -1
      return new CliExit({ code: 2, line: `invalid config: users[${index}]: ${error.reason} (${error.detail})` })
    }
    case "UserStoreError":
      return new CliExit({ code: 2, line: `invalid config: users.sqlite: ${error.message}` })
    default:
      return new CliExit({ code: 1, line: `cannot start: ${error.message}` })
  }
}

/** The config file's contents, or the default state under ./var (printing a new demo password once). */
const loadConfig = (configFile: Option.Option<string>) =>
  Option.isSome(configFile)
    ? readConfig(configFile.value)
    : loadDefaultState("var").pipe(
      Effect.tap(({ createdDemoPassword }) =>
        createdDemoPassword
          ? printLine({ event: "demo_user_created", username: "demo", password: createdDemoPassword, root: "var/home/demo" })
          : Effect.void
      ),
      Effect.flatMap(({ config }) => decodeConfig(applyEnvironment(config, process.env)))
    )

const loadValidConfig = (configFile: Option.Option<string>) =>
  loadConfig(configFile).pipe(Effect.mapError((error) => new CliExit({ code: 2, line: `invalid config: ${error.message}` })))

const serve = (configFile: Option.Option<string>) =>
  Effect.gen(function*() {
    const config = yield* loadValidConfig(configFile)
    const context = yield* Layer.build(ServerLayer.layer(config)).pipe(Effect.mapError(startupFailure(config)))
    const server = Context.get(context, Server)
    for (const protocol of ["sftp", "ftp", "ftps"] as const) {
      const address = server.addresses[protocol]
      if (address) yield* listening(protocol, address)
    }
    yield* printEvents.pipe(Effect.provide(context))
    // SIGHUP re-reads the config: new FTPS certificate, changed inline users; sessions stay.
    const runReload = yield* FiberSet.makeRuntime<never>()
    const onHangup = () =>
      runReload(loadValidConfig(configFile).pipe(
        Effect.flatMap(server.reload),
        Effect.andThen(printLine({ event: "reloaded" })),
        Effect.catch((error) => Effect.logError(`reload failed, keeping the running configuration: ${error.message}`))
      ))
    process.on("SIGHUP", onHangup)
    yield* Effect.addFinalizer(() => Effect.sync(() => void process.off("SIGHUP", onHangup)))
    // SIGTERM/SIGINT interrupt this fiber: shut down gracefully before the scope closes.
    return yield* Effect.never.pipe(
      Effect.onInterrupt(() =>
        server.shutdown(durationOf(config.shutdownTimeout)).pipe(
          Effect.flatMap(({ forced }) => Effect.logInfo("shut down").pipe(Effect.annotateLogs({ event: "shutdown", forced })))
        )
      )
    )
  }).pipe(Effect.scoped)

const serveCommand = Command.make(
  "serve",
  {
    config: Flag.String("config").pipe(Flag.withDescription("JSON config file (see README); default: state under ./var"), Flag.optional)
  },
  ({ config }) => serve(config)
).pipe(Command.withDescription("Run the server from a config file, or the default state under ./var without one"))

const configReference = Command.make("config-reference", {}, () =>
  renderConfigReference.pipe(Effect.flatMap((markdown) => Effect.sync(() => void process.stdout.write(markdown))))
).pipe(Command.withDescription("Print the configuration reference (Markdown), generated from the config Schema"))

const portcullis = Command.make("portcullis").pipe(
  Command.withDescription("Embeddable, security-first SFTP and FTP/FTPS server"),
  Command.withSubcommands([serveCommand, userCommand, checkConfig(loadValidConfig), keygen, hashPasswordCommand, configReference])
)

const teardown: Runtime.Teardown = (exit, onExit) => {
  if (Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause)) return onExit(0)
  const error = Cause.squash(exit.cause)
  // A usage error: the CLI module has already printed it with the command's help.
  if (CliError.isCliError(error)) return onExit(2)
  if (error instanceof CliExit) {
    process.stderr.write(`${error.line}\n`)
    return onExit(error.code)
  }
  process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
  onExit(1)
}

Command.run(portcullis, { version }).pipe(
  Effect.provide(Layer.mergeAll(NodeServices.layer, Logger.layer([logger]))),
  NodeRuntime.runMain({ disableErrorReporting: true, teardown })
)
