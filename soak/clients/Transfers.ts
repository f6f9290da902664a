/**
 * Client process: continuous transfers over one protocol. Each slot keeps one
 * logged-in connection and alternates uploads and downloads of whole files
 * until told to stop (or for a fixed number of rounds, for the warm-up), then
 * the process reports and exits.
 *
 * Every transfer is checked end to end: a download's bytes against the known
 * file's sha256, an upload's bytes by reading the file back from the user's root
 * on the host once the server said it was complete (SFTP close reply, FTP 226).
 * A broken connection is counted as a failed transfer and the slot reconnects.
 * At most 8 logins are in progress at once: the server caps unauthenticated
 * connections per client IP (32 by default), and all slots start together.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { TransferCommand, TransferCounts, TransferParams, TransferReport, TransferSlot } from "../Messages.ts"
import { Failures, finish, limiter, onCommand, receiveParams, send, sleep } from "./Channel.ts"
import * as Ftp from "./Ftp.ts"
import { Payload, sha256 } from "./Payload.ts"
import * as Sftp from "./Sftp.ts"
import * as SftpTransfer from "./SftpTransfer.ts"

const chunkBytes = 64 * 1024
const opening = limiter(8)

interface Connection {
  /** Uploads `chunks` to `name`. */
  upload(name: string, chunks: ReadonlyArray<Buffer>): Promise<void>
  /** Downloads `name`; its byte count and sha256. */
  download(name: string): Promise<{ bytes: number; sha256: string }>
  close(): void
}

const params = await receiveParams<TransferParams>()
const payload = new Payload(params.fileBytes, chunkBytes)
const failures = new Failures()
let stopping = false
onCommand<TransferCommand>((command) => {
  if (command.type === "stop") stopping = true
})

const counts = () => ({ completed: 0, failed: 0, mismatched: 0, bytes: 0, durationsMs: [] as Array<number> })
const uploads = counts()
const downloads = counts()

const open = async (slot: TransferSlot): Promise<Connection> => {
  if (params.protocol === "sftp") {
    const { client, sftp } = await Sftp.connect(params.target.sftpPort, slot.login, {
      cipher: "aes128-gcm@openssh.com",
      ...(params.sourceIp ? { localAddress: params.sourceIp } : {})
    })
    const into = Buffer.allocUnsafe(params.fileBytes)
    return {
      upload: (name, chunks) => SftpTransfer.upload(sftp, name, chunks, chunkBytes),
      download: async (name) => {
        into.fill(0)
        await SftpTransfer.download(sftp, name, into, chunkBytes)
        return { bytes: into.length, sha256: sha256(into) }
      },
      close: () => client.end()
    }
  }
  const client = await Ftp.connect(params.target, slot.login)
  return {
    upload: (name, chunks) => Ftp.upload(client, name, chunks),
    download: (name) => Ftp.download(client, name),
    close: () => client.close()
  }
}

/** One transfer, checked; throws only when it did not complete. */
const transfer = async (connection: Connection, slot: TransferSlot, index: number, isUpload: boolean) => {
  const tally = isUpload ? uploads : downloads
  const started = performance.now()
  let intact: boolean
  if (isUpload) {
    const name = `soak-${params.protocol}-${index}.bin`
    const content = payload.next()
    await connection.upload(name, content.chunks)
    const onDisk = await fs.readFile(path.join(slot.root, name))
    intact = onDisk.length === payload.size && sha256(onDisk) === content.sha256
    if (!intact) failures.add(`${params.protocol} upload`, `${name}: ${onDisk.length} bytes on disk, checksum differs from what was sent`)
  } else {
    const got = await connection.download(params.downloadPath)
    intact = got.bytes === params.fileBytes && got.sha256 === params.downloadSha256
    if (!intact) failures.add(`${params.protocol} download`, `${got.bytes} bytes received, checksum differs from the file`)
  }
  if (!intact) return void tally.mismatched++
  tally.completed++
  tally.bytes += payload.size
  tally.durationsMs.push(performance.now() - started)
}

const runSlot = async (slot: TransferSlot, index: number) => {
  let connection: Connection | undefined
  let isUpload = index % 2 === 0
  for (let round = 0; !stopping && (params.rounds === 0 || round < params.rounds); round++, isUpload = !isUpload) {
    try {
      connection ??= await opening(() => open(slot))
      await transfer(connection, slot, index, isUpload)
    } catch (error) {
      failures.add(`${params.protocol} ${isUpload ? "upload" : "download"}`, error)
      ;(isUpload ? uploads : downloads).failed++
      connection?.close()
      connection = undefined
      await sleep(1000)
    }
  }
  connection?.close()
}

await send({ type: "started" })
await Promise.all(params.slots.map(runSlot))
const report: TransferReport = {
  type: "report",
  protocol: params.protocol,
  upload: uploads satisfies TransferCounts,
  download: downloads satisfies TransferCounts,
  failures: failures.list()
}
await finish(report)
