/**
 * The machine a run happened on, and gauges of this process (the server's):
 * memory from `process.memoryUsage()`, open file descriptors from /proc/self/fd,
 * and a forced garbage collection when node runs with --expose-gc.
 */
import * as fs from "node:fs"
import * as os from "node:os"

export interface MachineDescription {
  readonly host: string
  readonly nproc: number
  readonly cpuModel: string
  readonly memoryBytes: number
  readonly kernel: string
  readonly os: string
  readonly node: string
  /** 1, 5 and 15 minute load averages when the run started: other work on the machine shows here. */
  readonly loadAverageAtStart: ReadonlyArray<number>
}

export const describeMachine = (): MachineDescription => ({
  host: os.hostname(),
  nproc: os.availableParallelism(),
  cpuModel: os.cpus()[0]?.model ?? "unknown",
  memoryBytes: os.totalmem(),
  kernel: os.release(),
  os: `${os.type()} ${os.arch()}`,
  node: process.version,
  loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100)
})

export interface Gauges {
  readonly rssBytes: number
  readonly heapUsedBytes: number
  readonly heapTotalBytes: number
  /** Memory of C++ objects bound to JS ones, Buffers included. */
  readonly externalBytes: number
  readonly arrayBuffersBytes: number
  readonly fds: number
}

/** Open fds of this process (the directory handle used to list them is not counted). */
export const openFds = (): number => fs.readdirSync("/proc/self/fd").length - 1

/** What the open fds are, by kind ("socket", "anon_inode:[eventpoll]", "/dev/null", "file"...). */
export const fdKinds = (): Record<string, number> => {
  const kinds: Record<string, number> = {}
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    let target: string
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`)
    } catch {
      // The directory handle of readdirSync itself, closed by now.
      continue
    }
    const kind = target.startsWith("socket:") ? "socket" : target.startsWith("pipe:") ? "pipe" : target.startsWith("/") && !target.startsWith("/dev/") ? "file" : target
    kinds[kind] = (kinds[kind] ?? 0) + 1
  }
  return kinds
}

export const gauges = (): Gauges => {
  const memory = process.memoryUsage()
  return {
    rssBytes: memory.rss,
    heapUsedBytes: memory.heapUsed,
    heapTotalBytes: memory.heapTotal,
    externalBytes: memory.external,
    arrayBuffersBytes: memory.arrayBuffers,
    fds: openFds()
  }
}

/**
 * Where the resident memory is, from /proc/self/smaps: the allocator's main heap
 * ("[heap]", glibc's brk arena), anonymous mappings (V8's heap pages, glibc's
 * per-thread arenas, large mmapped blocks), mapped files (code), the rest. Says
 * whether memory kept after everything closed is JavaScript's or the allocator's.
 */
export const rssByMapping = (): Record<string, number> => {
  const out: Record<string, number> = { heap: 0, anonymous: 0, files: 0, other: 0 }
  let kind = "other"
  for (const line of fs.readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line)
    if (mapping) {
      const name = mapping[1]!
      kind = name === "[heap]" ? "heap" : name === "" ? "anonymous" : name.startsWith("/") ? "files" : "other"
      continue
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line)
    if (rss) out[kind] = out[kind]! + Number(rss[1]) * 1024
  }
  return out
}

/**
 * Scheduler statistics of this process's main thread, the one that runs the
 * event loop: time on a CPU and time runnable but waiting for one. On a shared
 * machine the wait shows how much of the event-loop delay was other processes'
 * doing. Undefined where /proc does not have them.
 */
export const mainThreadSched = (): { readonly cpuMs: number; readonly waitMs: number } | undefined => {
  try {
    const [cpu, wait] = fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").trim().split(/\s+/).map(Number)
    return cpu === undefined || wait === undefined ? undefined : { cpuMs: cpu / 1e6, waitMs: wait / 1e6 }
  } catch {
    // Kernels built without scheduler statistics have no such file: the report says "-".
    return undefined
  }
}

/** CPU time of the whole machine since boot, busy and idle (all CPUs), from /proc/stat. */
export const machineCpu = (): { readonly busySeconds: number; readonly idleSeconds: number } | undefined => {
  try {
    const fields = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
    const ticks = 100 // USER_HZ
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0)
    return { busySeconds: (total - idle) / ticks, idleSeconds: idle / ticks }
  } catch {
    // No /proc/stat (not Linux): the report says "-".
    return undefined
  }
}

const gc = (globalThis as { gc?: () => void }).gc

/** Whether `collect` really forces a collection (node --expose-gc). */
export const canForceGc = gc !== undefined

/**
 * Full collections with turns of the event loop in between, so finalizers and
 * weak callbacks (which free native memory, such as closed sockets' buffers)
 * run and their memory is collected too.
 */
export const collect = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) {
    gc?.()
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}
