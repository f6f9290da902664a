/**
 * Property-based fuzzing of the FTP control-channel text handling: the
 * bounded LineReader (src/protocols/ftp/LineReader.ts) against a reference
 * reader for every chunking of random streams (IAC sequences, NUL, CR without
 * LF, over-long lines that must fail and never be split), the command parser
 * (Command.ts), and the reply formatter (Replies.ts), which must never let a
 * CR, LF or NUL from a name end a reply line early.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import { parseCommand } from "../../src/protocols/ftp/Command.js"
import { LineTooLong, makeLineReader } from "../../src/protocols/ftp/LineReader.js"
import { formatReply, quotePath } from "../../src/protocols/ftp/Replies.js"
import { commandLineArbitrary, referenceLines, streamPieceArbitrary } from "./FtpModel.js"
import { fuzzParameters } from "./FuzzRuns.js"
import { split } from "./SftpModel.js"

/** Feeds the chunks to a fresh reader: every line it returned, and whether it failed. */
const feed = (chunks: ReadonlyArray<Buffer>, maxLineBytes: number) => {
  const reader = makeLineReader({ maxLineBytes })
  const lines: Array<string> = []
  for (const chunk of chunks) {
    let result: ReturnType<typeof reader.push>
    try {
      result = reader.push(chunk)
    } catch (error) {
      return assert.fail(`push threw ${String(error)}`)
    }
    // Bytes past the limit are never held.
    assert.isAtMost(reader.buffered(), maxLineBytes)
    if (Result.isFailure(result)) {
      assert.instanceOf(result.failure, LineTooLong)
      // A failed reader stays failed: the rest of an over-long line never becomes a command.
      assert.isTrue(Result.isFailure(reader.push(Buffer.from("NOOP\r\n"))))
      return { lines, failed: true }
    }
    lines.push(...result.success)
  }
  return { lines, failed: false }
}

const streamArbitrary = (maxLineBytes: number, long = true) =>
  fc.array(streamPieceArbitrary(maxLineBytes, [], { long }), { maxLength: 12 }).map((pieces) => Buffer.concat(pieces))

/** Compares a reader's output with the reference: equal, or a prefix of it when the limit was hit. */
const agrees = (got: { lines: ReadonlyArray<string>; failed: boolean }, stream: Buffer, maxLineBytes: number, what: string) => {
  const expected = referenceLines(stream, maxLineBytes)
  assert.strictEqual(got.failed, expected.tooLong, `${what}: failed`)
  if (expected.tooLong) {
    // Lines completed in the failing chunk are dropped with the session: whatever came out is a prefix.
    assert.deepStrictEqual(got.lines, expected.lines.slice(0, got.lines.length), what)
  } else {
    assert.deepStrictEqual(got.lines, expected.lines, what)
  }
}

describe("FTP LineReader (property-based)", () => {
  it("gives the reference lines for every single split position of a stream, with any line limit", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 24 }).chain((max) => fc.tuple(fc.constant(max), streamArbitrary(max, false))), ([max, stream]) => {
        agrees(feed([stream], max), stream, max, "whole")
        for (let at = 0; at <= stream.length; at++) agrees(feed([stream.subarray(0, at), stream.subarray(at)], max), stream, max, `split at ${at}`)
      }),
      fuzzParameters(300, 4)
    )
  })

  it("gives the reference lines however the stream is chunked, one byte at a time included", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 8, 64, 4096).chain((max) => fc.tuple(fc.constant(max), streamArbitrary(max), fc.array(fc.nat(), { maxLength: 30 }))),
        ([max, stream, cuts]) => {
          agrees(feed(split(stream, cuts), max), stream, max, "random chunks")
          agrees(feed(Array.from(stream, (b) => Buffer.from([b])), max), stream, max, "bytes")
        }
      ),
      fuzzParameters(500, 4)
    )
  })

  it("an over-long line fails the reader and no part of it, or anything after it, is ever returned", () => {
    const shortLine = fc.stringMatching(/^[A-Z]{3,4}( [a-z0-9./]{0,12})?$/)
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.array(shortLine, { maxLength: 3 }),
        fc.integer({ min: 1, max: 200 }),
        fc.array(shortLine, { maxLength: 3 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (max, before, excess, after, cuts) => {
          const fitting = before.map((line) => line.slice(0, max))
          const stream = Buffer.from([...fitting, `RETR ${"x".repeat(max + excess)}`, ...after].map((line) => `${line}\r\n`).join(""), "latin1")
          const got = feed(split(stream, cuts), max)
          assert.isTrue(got.failed)
          assert.deepStrictEqual(got.lines, fitting.slice(0, got.lines.length))
        }
      ),
      fuzzParameters(1000)
    )
  })
})

describe("FTP command parser (property-based)", () => {
  const controls = /[\u0000-\u001f\u007f]/

  it("never throws; a command is a 3-4 letter verb and an argument without control characters, exactly as sent", () => {
    const lines = fc.oneof(
      commandLineArbitrary(),
      fc.string({ unit: "binary", maxLength: 40 }),
      // Lines as the reader returns them from raw streams (latin1 for non-UTF-8).
      streamArbitrary(64).map((stream) => referenceLines(stream, 4096).lines.join(""))
    )
    fc.assert(
      fc.property(lines, (line) => {
        let result: ReturnType<typeof parseCommand>
        try {
          result = parseCommand(line)
        } catch (error) {
          return assert.fail(`parseCommand threw ${String(error)}`)
        }
        const space = line.indexOf(" ")
        const verb = space === -1 ? line : line.slice(0, space)
        const argument = space === -1 ? "" : line.slice(space + 1)
        if (Result.isFailure(result)) {
          const reason = !/^[A-Za-z]{3,4}$/.test(verb) ? "BadVerb" : "ControlCharacter"
          assert.strictEqual(result.failure.reason, reason)
          if (reason === "ControlCharacter") assert.match(argument, controls)
          return
        }
        assert.match(result.success.verb, /^[A-Z]{3,4}$/)
        assert.strictEqual(result.success.verb, verb.toUpperCase())
        assert.strictEqual(result.success.argument, argument)
        assert.notMatch(result.success.argument, controls)
      }),
      fuzzParameters(3000)
    )
  })
})

describe("FTP replies (property-based)", () => {
  /** Checks the bytes of one reply: CRLF-terminated lines only, the RFC 959 §4.2 layout. */
  const checkReply = (bytes: Buffer, code: number, lineCount: number) => {
    const text = bytes.toString("utf8")
    assert.isTrue(text.endsWith("\r\n"))
    // No CR or LF other than in the CRLF that ends each line, and no NUL at all.
    assert.notMatch(text.replace(/\r\n/g, ""), /[\r\n\u0000]/)
    const lines = text.slice(0, -2).split("\r\n")
    assert.strictEqual(lines.length, lineCount)
    if (lineCount === 1) {
      assert.isTrue(lines[0]!.startsWith(`${code} `), lines[0])
      return
    }
    assert.isTrue(lines[0]!.startsWith(`${code}-`), lines[0])
    // Middle lines start with a space, so none can pass for the last line ("226 ok").
    for (const line of lines.slice(1, -1)) assert.isTrue(line.startsWith(" "), line)
    assert.isTrue(lines[lines.length - 1]!.startsWith(`${code} `))
  }

  const textArbitrary = fc.oneof(
    fc.string({ unit: "binary", maxLength: 30 }),
    fc.string({ unit: fc.constantFrom("\r", "\n", "\u0000", "a", " ", "2", "6", "\"", "é"), maxLength: 30 })
  )

  it("a reply of any text keeps its lines: CR, LF and NUL never reach the wire except as the line end", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 599 }),
        fc.oneof(textArbitrary, fc.array(textArbitrary, { maxLength: 6 })),
        (code, text) => {
          const lineCount = typeof text === "string" || text.length <= 1 ? 1 : text.length
          checkReply(formatReply(code, text), code, lineCount)
        }
      ),
      fuzzParameters(3000)
    )
  })

  it("a quoted path in a 257 reply reads back as the path: quotes doubled, nothing else changed", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 30 }).map((p) => p.replace(/[\r\n\u0000]/g, "")), (p) => {
        const quoted = quotePath(p)
        assert.isTrue(quoted.startsWith("\"") && quoted.endsWith("\""))
        // RFC 959 Appendix II: inside the quotes, every quote is doubled.
        assert.strictEqual(quoted.slice(1, -1).replaceAll("\"\"", "\u0001"), p.replaceAll("\"", "\u0001"))
        checkReply(formatReply(257, `${quoted} created`), 257, 1)
      }),
      fuzzParameters(2000)
    )
  })
})
