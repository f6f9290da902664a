/**
 * The orchestrator's side of a client process: forks one of soak/clients/*.ts
 * (node strips the types), sends it its parameters, and waits for its messages
 * with a deadline. Clients run in their own processes so that their CPU time
 * does not show up in the event-loop delay of the server, which runs here.
 *
 * Anything unexpected (a crash, a non-zero exit, a message that does not come
 * in time) is an error carrying the tail of the client's stderr; the soak
 * reports it as a failure of the harness, never as a result.
 */
import { type ChildProcess, fork } from "node:child_process"
import type { ClientParams } from "./Messages.ts"

const tailBytes = 4000

export class ClientError extends Error {}

interface Waiter {
  readonly type: string
  readonly resolve: (message: unknown) => void
  readonly reject: (error: Error) => void
}

export class ClientProcess<Message extends { readonly type: string }> {
  readonly name: string
  readonly #child: ChildProcess
  readonly #inbox: Array<Message> = []
  readonly #waiters = new Set<Waiter>()
  readonly #exited: Promise<number | null>
  #exit: string | undefined
  #stderr = ""
  #cpuSeconds: number | undefined

  constructor(name: string, script: string, params: ClientParams) {
    this.name = name
    this.#child = fork(new URL(`./clients/${script}`, import.meta.url), [], {
      execArgv: [],
      stdio: ["ignore", "pipe", "pipe", "ipc"]
    })
    const keepTail = (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString("utf8")).slice(-tailBytes)
    }
    this.#child.stdout!.on("data", keepTail)
    this.#child.stderr!.on("data", keepTail)
    this.#child.on("message", (message: Message) => {
      if (message.type === "cpu") return void (this.#cpuSeconds = (message as unknown as { seconds: number }).seconds)
      for (const waiter of this.#waiters) {
        if (waiter.type === message.type) {
          this.#waiters.delete(waiter)
          return waiter.resolve(message)
        }
      }
      this.#inbox.push(message)
    })
    this.#exited = new Promise((resolve) => {
      this.#child.on("exit", (code, signal) => {
        this.#exit = signal ? `killed by ${signal}` : `exited with code ${code}`
        for (const waiter of this.#waiters) waiter.reject(this.#failure(`${this.#exit} before sending "${waiter.type}"`))
        this.#waiters.clear()
        resolve(code)
      })
    })
    this.#child.send(params)
  }

  /** CPU time the client used, as it reported before its last message. */
  get cpuSeconds(): number | undefined {
    return this.#cpuSeconds
  }

  /** The client's output so far (the last few KB), for the report when something went wrong. */
  get output(): string {
    return this.#stderr.trim()
  }

  #failure(what: string): ClientError {
    const output = this.output
    return new ClientError(`${this.name} ${what}${output ? `; its output ends with: ${output}` : ""}`)
  }

  /** The next message of `type` (one that already arrived first), or an error after `timeoutMs`. */
  next<T extends Message["type"]>(type: T, timeoutMs: number): Promise<Extract<Message, { readonly type: T }>> {
    const index = this.#inbox.findIndex((m) => m.type === type)
    if (index >= 0) return Promise.resolve(this.#inbox.splice(index, 1)[0] as Extract<Message, { readonly type: T }>)
    if (this.#exit) return Promise.reject(this.#failure(`${this.#exit} before sending "${type}"`))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter)
        reject(this.#failure(`sent no "${type}" within ${Math.round(timeoutMs / 1000)} s`))
      }, timeoutMs)
      const waiter: Waiter = {
        type,
        resolve: (message) => {
          clearTimeout(timer)
          resolve(message as Extract<Message, { readonly type: T }>)
        },
        reject: (error) => {
          clearTimeout(timer)
          reject(error)
        }
      }
      this.#waiters.add(waiter)
    })
  }

  send(command: object): void {
    if (!this.#exit) this.#child.send(command)
  }

  /** Waits for the process to end; an error if it exits non-zero or not within `timeoutMs`. */
  async exited(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const code = await Promise.race([
      this.#exited,
      new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)))
    ])
    clearTimeout(timer)
    if (code === "timeout") throw this.#failure(`did not exit within ${Math.round(timeoutMs / 1000)} s`)
    if (code !== 0) throw this.#failure(this.#exit ?? "failed")
  }

  /** Ends the process if it still runs (cleanup after a failure). */
  kill(): void {
    if (!this.#exit) this.#child.kill("SIGKILL")
  }
}
