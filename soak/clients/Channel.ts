/**
 * The client side of the IPC channel to the orchestrator: the parameters arrive
 * as the first message, commands after it, and answers go back with `send`.
 * When the orchestrator goes away the client exits at once, so a crashed soak
 * never leaves client processes holding connections.
 */
import type { Failure } from "../Messages.ts"

let finished = false
process.on("disconnect", () => {
  if (!finished) process.exit(3)
})

/** The first message: this process's parameters. */
export const receiveParams = <P>(): Promise<P> =>
  new Promise((resolve) => process.once("message", (message) => resolve(message as P)))

/** Every later message. */
export const onCommand = <C>(handler: (command: C) => void): void => {
  process.on("message", (message) => handler(message as C))
}

/** Sends one message and resolves once it has been handed to the channel. */
export const send = (message: object): Promise<void> =>
  new Promise((resolve, reject) => {
    if (!process.send) return reject(new Error("not started by the soak (no IPC channel)"))
    process.send(message, undefined, {}, (error) => (error ? reject(error) : resolve()))
  })

/**
 * Sends this process's CPU time (the orchestrator reports how much the clients
 * used), then the last message, and lets the process end: it exits once its sockets are
 * closed, or after five seconds whatever is left.
 */
export const finish = async (message: object): Promise<void> => {
  const cpu = process.cpuUsage()
  await send({ type: "cpu", seconds: (cpu.user + cpu.system) / 1e6 })
  await send(message)
  finished = true
  process.disconnect()
  setTimeout(() => process.exit(0), 5000).unref()
}

/**
 * Failures, counted by kind and message, with at most `keep` distinct entries kept
 * (a thousand sessions failing the same way must not flood the report).
 */
export class Failures {
  readonly #counts = new Map<string, { what: string; message: string; count: number }>()
  #total = 0
  readonly #keep: number
  constructor(keep = 20) {
    this.#keep = keep
  }

  add(what: string, error: unknown): void {
    this.#total++
    const message = error instanceof Error ? `${error.message}${"code" in error ? ` (${String(error.code)})` : ""}` : String(error)
    const key = `${what}\u0000${message}`
    const entry = this.#counts.get(key)
    if (entry) entry.count++
    else if (this.#counts.size < this.#keep) this.#counts.set(key, { what, message, count: 1 })
  }

  get total(): number {
    return this.#total
  }

  /** The kept failures with how often each happened (`total` counts the ones not kept too). */
  list(): Array<Failure> {
    return Array.from(this.#counts.values(), (entry) => ({ ...entry }))
  }
}

/**
 * Runs `task(i)` for i in [0, count) with at most `parallel` running at once. The
 * first failure stops new tasks from starting and is what the Promise rejects with.
 */
export const forEachLimited = async (count: number, parallel: number, task: (i: number) => Promise<void>): Promise<void> => {
  let next = 0
  let failed = false
  const worker = async () => {
    while (next < count && !failed) {
      try {
        await task(next++)
      } catch (error) {
        failed = true
        throw error
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker))
}

/** At most `n` calls of the returned function run at once; the others wait their turn. */
export const limiter = (n: number) => {
  let running = 0
  const waiting: Array<() => void> = []
  return async <A>(task: () => Promise<A>): Promise<A> => {
    if (running >= n) await new Promise<void>((resolve) => waiting.push(resolve))
    else running++
    try {
      return await task()
    } finally {
      const next = waiting.shift()
      if (next) next()
      else running--
    }
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
