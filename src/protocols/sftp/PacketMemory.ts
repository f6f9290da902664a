/**
 * Memory for the SSH packets the server sends, used again once the kernel has
 * their bytes instead of allocated and freed for every packet.
 *
 * A download sends one 32 KiB CHANNEL_DATA packet after another, and ssh2 gives
 * each a fresh ArrayBuffer: 8,192 allocations per 256 MiB, each a malloc, a
 * backing store V8 tracks until the next garbage collection, and a free. Here a
 * packet of 16 KiB up to a full 32 KiB channel packet is a view of a block of
 * one fixed size, taken from a free list; once the socket has written it (see
 * `releaseWritten`), the block goes back to the list. Smaller packets come from
 * Node's shared pool as before, and larger ones (a client that allows bigger
 * channel packets) get memory of their own.
 *
 * A block's old bytes are the ciphertext of an earlier packet; every byte of a
 * new packet is written before it is sent (length, padding, payload, tag),
 * which is the same promise `Buffer.allocUnsafe` makes with memory that may hold
 * anything. The free list holds at most 4 MiB; past that, a returned block is
 * freed at once.
 */
import { releaseBuffer } from "../common/ReleaseMemory.js"

/** The block: a 32 KiB CHANNEL_DATA payload, its headers, up to 19 bytes of padding and a 16-byte tag fit. */
const blockBytes = 32 * 1024 + 64

/** Packets below this use Node's pool (cheap already); the block would waste more than half. */
const minPacketBytes = 16 * 1024

/** Blocks kept for reuse: 4 MiB. */
const maxFree = 128

const free: Array<ArrayBuffer> = []
let made = 0
let reused = 0
/** Every block `take` made, and those of them out in a packet now (a block is given back once). */
const blocks = new WeakSet<ArrayBufferLike>()
const lent = new WeakSet<ArrayBufferLike>()

/**
 * Memory for a packet of `length` bytes, with unspecified content.
 * @category constructors
 */
export const take = (length: number): Buffer<ArrayBuffer> => {
  if (length < minPacketBytes || length > blockBytes) return Buffer.allocUnsafe(length)
  let block = free.pop()
  if (block === undefined) {
    block = Buffer.allocUnsafeSlow(blockBytes).buffer as ArrayBuffer
    blocks.add(block)
    made++
  } else reused++
  lent.add(block)
  return Buffer.from(block, 0, length)
}

/**
 * Takes back the memory of `packet` once the socket has written it, telling
 * whether it was a block from `take`. The caller guarantees nothing reads
 * `packet` any more.
 * @category constructors
 */
export const giveBack = (packet: Uint8Array): boolean => {
  const block = packet.buffer
  if (!blocks.has(block)) return false
  if (!lent.delete(block)) return true
  if (free.length < maxFree) free.push(block as ArrayBuffer)
  else releaseBuffer(block)
  return true
}

/**
 * Blocks made and packets served from the free list since the process started,
 * and blocks on the free list now: for tests.
 * @category testing
 */
export const counts = (): { readonly made: number; readonly reused: number; readonly free: number } => ({
  made,
  reused,
  free: free.length
})
