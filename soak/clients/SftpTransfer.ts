/**
 * Whole-file SFTP upload and download over ssh2, with requests pipelined the way
 * ssh2's own fastPut/fastGet do it (which need local files, and the soak keeps
 * its bytes in memory): `inFlight` requests of `chunkBytes` at once.
 */
import type ssh2 from "ssh2"
import { forEachLimited } from "./Channel.ts"
import { call } from "./Sftp.ts"

const inFlight = 16

/** Writes `chunks` (each `chunkBytes` long but the last) to `remotePath`, truncating it first. */
export const upload = async (sftp: ssh2.SFTPWrapper, remotePath: string, chunks: ReadonlyArray<Buffer>, chunkBytes: number) => {
  const handle = await call<Buffer>((cb) => sftp.open(remotePath, "w", cb))
  let failure: unknown
  try {
    await forEachLimited(chunks.length, inFlight, (i) =>
      call<void>((cb) => sftp.write(handle, chunks[i]!, 0, chunks[i]!.length, i * chunkBytes, (error) => cb(error, undefined))))
  } catch (error) {
    failure = error
  }
  // The close reply is the server's word that the file is complete.
  await call<void>((cb) => sftp.close(handle, (error) => cb(error, undefined))).catch((error: unknown) => {
    failure ??= error
  })
  if (failure !== undefined) throw failure
}

/** Reads `remotePath`, which must be exactly `into.length` bytes long, into `into`. */
export const download = async (sftp: ssh2.SFTPWrapper, remotePath: string, into: Buffer, chunkBytes: number) => {
  const handle = await call<Buffer>((cb) => sftp.open(remotePath, "r", cb))
  let failure: unknown
  try {
    const stats = await call<ssh2.Stats>((cb) => sftp.fstat(handle, cb))
    if (stats.size !== into.length) throw new Error(`size ${stats.size}, expected ${into.length}`)
    await forEachLimited(Math.ceil(into.length / chunkBytes), inFlight, async (i) => {
      const at = i * chunkBytes
      const length = Math.min(chunkBytes, into.length - at)
      const got = await call<number>((cb) => sftp.read(handle, into, at, length, at, (error, bytes) => cb(error, bytes)))
      if (got !== length) throw new Error(`short read at ${at}: ${got} of ${length} bytes`)
    })
  } catch (error) {
    failure = error
  }
  await call<void>((cb) => sftp.close(handle, (error) => cb(error, undefined))).catch((error: unknown) => {
    failure ??= error
  })
  if (failure !== undefined) throw failure
}
