/**
 * PacketMemory: which packet sizes get a block, a block given back is what the
 * next packet gets, a block is never on the free list twice, and the free list
 * is bounded. The end-to-end check (blocks reused by a real download whose
 * bytes arrive intact) is in test/sftp/OpenSSH.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import * as PacketMemory from "../../src/protocols/sftp/PacketMemory.js"

/** A full CHANNEL_DATA packet for a 32 KiB chunk, as either AEAD cipher lays it out. */
const fullPacket = 32804

describe("PacketMemory", () => {
  it("small packets come from Node's pool, large ones have their own memory: neither is a block", () => {
    for (const length of [64, 16 * 1024 - 1, 64 * 1024]) {
      const packet = PacketMemory.take(length)
      assert.strictEqual(packet.length, length)
      assert.isFalse(PacketMemory.giveBack(packet), `${length} bytes`)
      assert.isFalse(packet.buffer.detached)
    }
    assert.isFalse(PacketMemory.giveBack(Buffer.allocUnsafeSlow(fullPacket)), "memory from elsewhere")
  })

  it("a packet given back is the memory of the next one", () => {
    const first = PacketMemory.take(fullPacket)
    assert.strictEqual(first.length, fullPacket)
    assert.strictEqual(first.byteOffset, 0)
    assert.isAbove(first.buffer.byteLength, fullPacket)
    const second = PacketMemory.take(16 * 1024)
    assert.notStrictEqual(second.buffer, first.buffer, "a block lent out is not lent again")
    assert.isTrue(PacketMemory.giveBack(first))
    const before = PacketMemory.counts()
    const third = PacketMemory.take(20000)
    assert.strictEqual(third.buffer, first.buffer)
    assert.strictEqual(third.length, 20000)
    assert.strictEqual(PacketMemory.counts().reused, before.reused + 1)
    assert.strictEqual(PacketMemory.counts().made, before.made)
    PacketMemory.giveBack(second)
    PacketMemory.giveBack(third)
  })

  it("a packet given back twice goes onto the free list once", () => {
    const packet = PacketMemory.take(fullPacket)
    const free = PacketMemory.counts().free
    assert.isTrue(PacketMemory.giveBack(packet))
    assert.isTrue(PacketMemory.giveBack(packet), "still recognised as a block")
    assert.strictEqual(PacketMemory.counts().free, free + 1)
    const a = PacketMemory.take(fullPacket)
    const b = PacketMemory.take(fullPacket)
    assert.notStrictEqual(a.buffer, b.buffer)
    PacketMemory.giveBack(a)
    PacketMemory.giveBack(b)
  })

  it("keeps at most 128 blocks and frees the rest at once", () => {
    const packets = Array.from({ length: 200 }, () => PacketMemory.take(fullPacket))
    assert.strictEqual(new Set(packets.map((p) => p.buffer)).size, 200, "200 distinct blocks")
    for (const packet of packets) PacketMemory.giveBack(packet)
    assert.strictEqual(PacketMemory.counts().free, 128)
    const freed = packets.filter((p) => p.buffer.detached)
    assert.strictEqual(freed.length, 200 - 128)
  })
})
