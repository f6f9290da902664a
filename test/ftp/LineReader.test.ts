/**
 * The bounded control-line reader: CRLF and LF, Telnet IAC handling split at
 * any byte, the line limit (never split, memory bounded), the UTF-8/latin1
 * decoding, the remainder used against STARTTLS injection, and a seeded
 * randomized comparison with a whole-buffer reference model.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { isUtf8 } from "node:buffer"
import { type LineReader, makeLineReader, remainderCapBytes } from "../../src/protocols/ftp/LineReader.js"

const bytes = (...parts: ReadonlyArray<string | ReadonlyArray<number>>): Buffer =>
  Buffer.concat(parts.map((part) => (typeof part === "string" ? Buffer.from(part, "latin1") : Buffer.from(part))))

const IAC = 0xff
const WILL = 0xfb
const DO = 0xfd
const DONT = 0xfe
const IP = 0xf4
const DM = 0xf2
const NOP = 0xf1

/** Pushes each chunk; the lines of all of them, or "failed". */
const feed = (reader: LineReader, chunks: ReadonlyArray<Buffer>): ReadonlyArray<string> | "failed" => {
  const lines: Array<string> = []
  for (const chunk of chunks) {
    const result = reader.push(chunk)
    if (Result.isFailure(result)) return "failed"
    lines.push(...result.success)
  }
  return lines
}

const linesOf = (result: Result.Result<ReadonlyArray<string>, unknown>): ReadonlyArray<string> => {
  assert.isTrue(Result.isSuccess(result))
  return Result.isSuccess(result) ? result.success : []
}

describe("LineReader", () => {
  it("ends lines at CRLF and at a bare LF", () => {
    const reader = makeLineReader()
    assert.deepStrictEqual(linesOf(reader.push(bytes("USER a\r\nPASS b\nNOOP\r\n"))), ["USER a", "PASS b", "NOOP"])
    assert.strictEqual(reader.buffered(), 0)
  })

  it("keeps a CR that is not directly before LF", () => {
    const reader = makeLineReader()
    assert.deepStrictEqual(linesOf(reader.push(bytes("A\rB\r\r\n"))), ["A\rB\r"])
  })

  it("returns empty lines as empty strings", () => {
    assert.deepStrictEqual(linesOf(makeLineReader().push(bytes("\r\n\nNOOP\r\n"))), ["", "", "NOOP"])
  })

  it("holds an unfinished line until its terminator arrives", () => {
    const reader = makeLineReader()
    assert.deepStrictEqual(linesOf(reader.push(bytes("RETR fi"))), [])
    assert.strictEqual(reader.buffered(), 7)
    assert.deepStrictEqual(linesOf(reader.push(bytes("le\r"))), [])
    assert.strictEqual(reader.buffered(), 9)
    assert.deepStrictEqual(linesOf(reader.push(bytes("\n"))), ["RETR file"])
    assert.strictEqual(reader.buffered(), 0)
  })

  it("gives the same lines for every split position of a stream", () => {
    const stream = bytes(
      "USER ",
      [IAC, IAC],
      "x\r\nPA",
      [IAC, WILL, 0x01],
      "SS y\r",
      [IAC, NOP],
      "\nNOOP\n",
      [IAC, IP, IAC, DM],
      "ABOR\r\n",
      "A\rB\r\n"
    )
    const expected = ["USER \u00ffx", "PASS y", "NOOP", "ABOR", "A\rB"]
    assert.deepStrictEqual(feed(makeLineReader(), [stream]), expected)
    for (let i = 0; i <= stream.length; i++) {
      assert.deepStrictEqual(feed(makeLineReader(), [stream.subarray(0, i), stream.subarray(i)]), expected, `split at ${i}`)
      for (let j = i; j <= stream.length; j++) {
        const three = [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)]
        assert.deepStrictEqual(feed(makeLineReader(), three), expected, `split at ${i} and ${j}`)
      }
    }
    const oneByOne = Array.from(stream, (byte) => Buffer.from([byte]))
    assert.deepStrictEqual(feed(makeLineReader(), oneByOne), expected)
  })

  it("turns IAC IAC into one 0xFF data byte", () => {
    const reader = makeLineReader()
    assert.deepStrictEqual(linesOf(reader.push(bytes("AB", [IAC, IAC], "C\r\n"))), ["AB\u00ffC"])
    // Split between the two IACs.
    assert.deepStrictEqual(linesOf(reader.push(bytes("AB", [IAC]))), [])
    assert.deepStrictEqual(linesOf(reader.push(bytes([IAC], "C\r\n"))), ["AB\u00ffC"])
  })

  it("drops option negotiation (IAC WILL/WONT/DO/DONT option), even split across chunks", () => {
    const reader = makeLineReader()
    assert.deepStrictEqual(linesOf(reader.push(bytes("US", [IAC, WILL, 0x18], "ER\r\n"))), ["USER"])
    assert.deepStrictEqual(linesOf(reader.push(bytes("NO", [IAC]))), [])
    assert.deepStrictEqual(linesOf(reader.push(bytes([DO]))), [])
    // The option byte may be anything, even LF or IAC: it is never data.
    assert.deepStrictEqual(linesOf(reader.push(bytes([0x0a], "OP", [IAC, DONT, IAC], "\r\n"))), ["NOOP"])
  })

  it("drops IAC with any other command byte (the Synch before ABOR)", () => {
    const reader = makeLineReader()
    assert.deepStrictEqual(linesOf(reader.push(bytes([IAC, IP, IAC, DM], "ABOR\r\n"))), ["ABOR"])
    assert.deepStrictEqual(linesOf(reader.push(bytes([IAC]))), [])
    assert.deepStrictEqual(linesOf(reader.push(bytes([0x0a], "NOOP\r\n"))), ["NOOP"])
  })

  it("accepts a line of exactly the limit, with CRLF or LF, and with the CR in the next chunk", () => {
    const line = "A".repeat(4096)
    assert.deepStrictEqual(linesOf(makeLineReader().push(bytes(line, "\r\n"))), [line])
    assert.deepStrictEqual(linesOf(makeLineReader().push(bytes(line, "\n"))), [line])
    const reader = makeLineReader()
    assert.deepStrictEqual(linesOf(reader.push(bytes(line, "\r"))), [])
    assert.strictEqual(reader.buffered(), 4096)
    assert.deepStrictEqual(linesOf(reader.push(bytes("\n"))), [line])
  })

  it("counts the limit after Telnet processing", () => {
    const reader = makeLineReader({ maxLineBytes: 4 })
    assert.deepStrictEqual(linesOf(reader.push(bytes([IAC, IAC, IAC, NOP, IAC, IAC], "AB", [IAC, WILL, 1], "\r\n"))), ["\u00ff\u00ffAB"])
  })

  it("refuses a line one byte over the limit and never splits it into two commands", () => {
    const reader = makeLineReader({ maxLineBytes: 8 })
    const result = reader.push(bytes("RETR abcDELE x\r\n"))
    assert.isTrue(Result.isFailure(result))
    if (Result.isFailure(result)) {
      assert.strictEqual(result.failure._tag, "LineTooLong")
      assert.strictEqual(result.failure.maxLineBytes, 8)
    }
    // The reader stays failed: the tail is never read as a command.
    assert.isTrue(Result.isFailure(reader.push(bytes("NOOP\r\n"))))
    assert.strictEqual(reader.buffered(), 0)
    assert.strictEqual(reader.takeRemainder().length, 0)
  })

  it("refuses a held CR that turns out to be data past the limit", () => {
    const reader = makeLineReader({ maxLineBytes: 3 })
    assert.deepStrictEqual(linesOf(reader.push(bytes("ABC\r"))), [])
    assert.isTrue(Result.isFailure(reader.push(bytes("x"))))
  })

  it("fails a 1 MiB line without newline and holds no more than the limit", () => {
    const reader = makeLineReader()
    assert.isTrue(Result.isFailure(reader.push(Buffer.alloc(1024 * 1024, 0x41))))
    assert.strictEqual(reader.buffered(), 0)

    const slow = makeLineReader()
    let failed = false
    for (let sent = 0; sent < 1024 * 1024 && !failed; sent += 1000) {
      failed = Result.isFailure(slow.push(Buffer.alloc(1000, 0x41)))
      assert.isAtMost(slow.buffered(), 4096)
    }
    assert.isTrue(failed)
  })

  it("decodes valid UTF-8 as UTF-8 and anything else as latin1", () => {
    const reader = makeLineReader()
    assert.deepStrictEqual(linesOf(reader.push(Buffer.from("STOR café €\r\n", "utf8"))), ["STOR café €"])
    assert.deepStrictEqual(linesOf(reader.push(bytes("STOR caf", [0xe9], "\r\n"))), ["STOR café"])
    // A truncated UTF-8 sequence is not UTF-8: each byte becomes one character.
    assert.deepStrictEqual(linesOf(reader.push(bytes("x", [0xe2, 0x82], "\r\n"))), ["x\u00e2\u0082"])
  })

  it("keeps pipelined complete lines as lines, and the rest as remainder", () => {
    const reader = makeLineReader()
    // Both lines come out: the session sees the queued USER line and refuses the upgrade.
    assert.deepStrictEqual(linesOf(reader.push(bytes("AUTH TLS\r\nUSER x\r\n"))), ["AUTH TLS", "USER x"])
    assert.strictEqual(reader.takeRemainder().length, 0)

    const partial = makeLineReader()
    assert.deepStrictEqual(linesOf(partial.push(bytes("AUTH TLS\r\nUSER x"))), ["AUTH TLS"])
    assert.strictEqual(partial.takeRemainder().toString("latin1"), "USER x")
    // Taking clears the remainder and the unfinished line.
    assert.strictEqual(partial.takeRemainder().length, 0)
    assert.strictEqual(partial.buffered(), 0)
    assert.deepStrictEqual(linesOf(partial.push(bytes("NOOP\r\n"))), ["NOOP"])
  })

  it("reports raw bytes in the remainder, Telnet commands included", () => {
    const reader = makeLineReader()
    assert.deepStrictEqual(linesOf(reader.push(bytes("AUTH TLS\r\n", [IAC, NOP]))), ["AUTH TLS"])
    assert.strictEqual(reader.buffered(), 0)
    assert.deepStrictEqual([...reader.takeRemainder()], [IAC, NOP])

    const hello = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
    const tls = makeLineReader()
    assert.deepStrictEqual(linesOf(tls.push(Buffer.concat([bytes("AUTH TLS\r\n"), hello]))), ["AUTH TLS"])
    assert.deepStrictEqual([...tls.takeRemainder()], [...hello])
  })

  it("spans the remainder over several chunks and caps it", () => {
    const reader = makeLineReader()
    linesOf(reader.push(bytes("NOOP\r\nab")))
    linesOf(reader.push(bytes("cd")))
    assert.strictEqual(reader.takeRemainder().toString("latin1"), "abcd")
    linesOf(reader.push(Buffer.alloc(1000, 0x41)))
    assert.strictEqual(reader.takeRemainder().length, remainderCapBytes)
  })
})

// --- randomized comparison with a reference model -------------------------------------

/** mulberry32: a small seeded PRNG, so failures reproduce. */
const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The whole stream at once: Telnet stripped, split at LF, CR before LF dropped. */
const reference = (stream: Buffer, limit: number): { readonly lines: ReadonlyArray<string>; readonly failed: boolean } => {
  const data: Array<number> = []
  for (let i = 0; i < stream.length; i++) {
    const byte = stream[i]!
    if (byte !== IAC) data.push(byte)
    else if (i + 1 >= stream.length) break
    else if (stream[i + 1] === IAC) data.push(IAC), i += 1
    else if (stream[i + 1]! >= WILL && stream[i + 1]! <= DONT) i += 2
    else i += 1
  }
  const lines: Array<string> = []
  let start = 0
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== 0x0a) continue
    const end = i > start && data[i - 1] === 0x0d ? i - 1 : i
    if (end - start > limit) return { lines, failed: true }
    const line = Buffer.from(data.slice(start, end))
    lines.push(line.toString(isUtf8(line) ? "utf8" : "latin1"))
    start = i + 1
  }
  const tail = data.length - start - (data[data.length - 1] === 0x0d && data.length > start ? 1 : 0)
  return { lines, failed: tail > limit }
}

describe("LineReader (randomized)", () => {
  it("never throws, never exceeds the limit and agrees with the reference on 2000 streams", () => {
    const random = prng(0x5eed)
    const pick = (): number => {
      const r = random()
      if (r < 0.1) return 0x0a
      if (r < 0.18) return 0x0d
      if (r < 0.26) return IAC
      if (r < 0.3) return WILL + Math.floor(random() * 4)
      if (r < 0.7) return 0x41 + Math.floor(random() * 26)
      if (r < 0.75) return 0xc3
      return Math.floor(random() * 256)
    }
    let failures = 0
    let lineCount = 0
    for (let n = 0; n < 2000; n++) {
      const limit = 1 + Math.floor(random() * 40)
      const stream = Buffer.from(Array.from({ length: Math.floor(random() * 300) }, pick))
      const expected = reference(stream, limit)
      const reader = makeLineReader({ maxLineBytes: limit })
      const got: Array<string> = []
      let failed = false
      for (let at = 0; at < stream.length && !failed;) {
        const size = 1 + Math.floor(random() * 20)
        const result = reader.push(stream.subarray(at, at + size))
        at += size
        assert.isAtMost(reader.buffered(), limit)
        if (Result.isFailure(result)) failed = true
        else {
          for (const line of result.success) {
            // Each byte decodes to at most one UTF-16 unit (latin1: exactly one), so this bounds the bytes too.
            assert.isAtMost(line.length, limit)
            got.push(line)
          }
        }
      }
      const context = `case ${n}: limit ${limit}, stream ${stream.toString("hex")}`
      assert.strictEqual(failed, expected.failed, context)
      if (failed) failures++
      lineCount += got.length
      if (failed) {
        // Lines of the chunk that failed are dropped with the session; the rest is a prefix.
        assert.deepStrictEqual(got, expected.lines.slice(0, got.length), context)
      } else {
        assert.deepStrictEqual(got, expected.lines, context)
      }
    }
    // The generator exercises both outcomes.
    assert.isAbove(failures, 200)
    assert.isBelow(failures, 1800)
    assert.isAbove(lineCount, 5000)
  })
})
