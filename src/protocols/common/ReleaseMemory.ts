/**
 * Giving transient buffers' memory back at once instead of at the next full GC.
 *
 * Node allocates every socket read, and ssh2 every SSH packet, as a fresh
 * ArrayBuffer outside the JavaScript heap. V8 frees those only when a garbage
 * collection finds them dead, and it schedules a full mark-compact for every
 * 64 MiB of such memory: measured, a 256 MiB transfer ran 9 to 13 of them
 * (30 ms of main-thread work each, plus the marking threads). A buffer whose
 * bytes have been consumed (copied into a file buffer, or handed to the kernel)
 * is detached here, which frees its memory immediately and leaves nothing to
 * collect.
 *
 * Only a buffer that owns its whole ArrayBuffer is detached: a small Buffer is a
 * slice of Node's shared pool, and detaching that would pull the bytes out from
 * under its neighbours. The caller guarantees that nothing else still reads the
 * buffer.
 */
import type { Socket } from "node:net"

/**
 * Frees the memory of `chunk` when it is the only view of its ArrayBuffer;
 * afterwards `chunk` is empty. Does nothing for pooled or shared buffers.
 * @category constructors
 */
export const release = (chunk: Uint8Array): void => {
  if (chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength) releaseBuffer(chunk.buffer)
}

/**
 * Frees `buffer` at once; every view of it becomes empty. The caller guarantees
 * that no view of it is still read.
 * @category constructors
 */
export const releaseBuffer = (buffer: ArrayBufferLike): void => {
  if (buffer instanceof ArrayBuffer && !buffer.detached) buffer.transfer(0)
}

interface WriteChunk {
  readonly chunk: unknown
}

/**
 * Makes `socket` release every whole buffer written through it once the kernel
 * has it. For sockets whose writers never touch a buffer after writing it:
 * ssh2 allocates each outgoing packet, encrypts it in place and writes it (what
 * it keeps, such as its KEXINIT for the exchange hash, is a separate copy);
 * Node's TLS layer writes a fresh copy of each record batch.
 *
 * Each written chunk is first offered to `reuse`, at the same moment; a chunk it
 * takes (returns true for) is not freed. The default takes none.
 * @category constructors
 */
export const releaseWritten = (socket: Socket, reuse: (chunk: Uint8Array) => boolean = () => false): void => {
  const self = socket as Socket & {
    _writev: (chunks: Array<WriteChunk>, callback: (error?: Error | null) => void) => void
    _write: (chunk: unknown, encoding: BufferEncoding, callback: (error?: Error | null) => void) => void
  }
  const writev = self._writev.bind(self)
  const write = self._write.bind(self)
  self._writev = (chunks, callback) => {
    // Node empties the array it passed once the write is under way: keep the chunks.
    const written = chunks.map(({ chunk }) => chunk)
    writev(chunks, (error) => {
      for (const chunk of written) if (chunk instanceof Uint8Array && !reuse(chunk)) release(chunk)
      callback(error)
    })
  }
  self._write = (chunk, encoding, callback) =>
    write(chunk, encoding, (error) => {
      if (chunk instanceof Uint8Array && !reuse(chunk)) release(chunk)
      callback(error)
    })
}
