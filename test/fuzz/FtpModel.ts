/**
 * A model of what a hostile FTP client sends on the control connection, for
 * fast-check: command lines (every known verb, unknown and malformed verbs,
 * arguments with traversal paths, quotes, NUL, CR and other controls), Telnet
 * IAC sequences, bare CRs, over-long lines and raw bytes, glued into byte
 * streams; a reference reader that says which lines a correct LineReader
 * returns for a whole stream, written without its state machine; and the
 * check that a transcript of server output is nothing but well-formed replies.
 */
import fc from "fast-check"
import { isUtf8 } from "node:buffer"
import { FtpVerb } from "../../src/protocols/ftp/Command.js"
import { pathArbitrary } from "./SftpModel.js"

const IAC = 0xff
const WILL = 0xfb
const DONT = 0xfe

/** Raw bytes of a string, one byte per UTF-16 unit below 256 (latin1). */
const latin1 = (text: string): Buffer => Buffer.from(text, "latin1")

/** Telnet sequences: IAC IAC (a data 0xFF), option negotiation, other commands, a lone IAC. */
export const telnetArbitrary: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constant(Buffer.from([IAC, IAC])),
  fc.tuple(fc.integer({ min: WILL, max: DONT }), fc.nat({ max: 255 })).map(([command, option]) => Buffer.from([IAC, command, option])),
  fc.integer({ min: 0, max: 0xfa }).map((command) => Buffer.from([IAC, command])),
  fc.constant(Buffer.from([IAC]))
)

/**
 * Arguments: paths (traversal, Unicode, controls), quotes that a 257 reply must
 * double, numbers for REST/ALLO/TYPE, address forms for PORT/EPRT.
 */
export const argumentArbitrary = (extra: ReadonlyArray<string> = [], options: { readonly long?: boolean } = {}): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: pathArbitrary(extra, options) },
    { weight: 1, arbitrary: fc.constantFrom("", " ", "a\"b", "\"\"", "-la", "-la d", "TLS", "SSL", "P", "C", "0", "I", "A N", "UTF8 ON", "ALL", "1", "2") },
    { weight: 1, arbitrary: fc.oneof(fc.nat().map(String), fc.constantFrom("999999999999999", "1e9", "-1", "0x10", "100 R 10")) },
    { weight: 1, arbitrary: fc.constantFrom("127,0,0,1,4,1", "127,0,0,1,0,21", "10,0,0,1,200,1", "|1|127.0.0.1|1025|", "|2|::1|2000|", "|3|x|1|") },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom("20240102030405", "19700101000000", "99999999999999", "2024"), pathArbitrary(extra, options)).map(([t, p]) => `${t} ${p}`) }
  )

/** A command line without its terminator, as a string: mostly known verbs, any case. */
export const commandLineArbitrary = (extra: ReadonlyArray<string> = [], options: { readonly long?: boolean } = {}): fc.Arbitrary<string> =>
  fc.oneof(
    {
      weight: 8,
      arbitrary: fc.tuple(
        fc.constantFrom(...FtpVerb.filter((verb) => verb !== "QUIT" && verb !== "AUTH" && verb !== "PASS" && verb !== "USER" && verb !== "REIN")),
        fc.boolean(),
        fc.option(argumentArbitrary(extra, options), { freq: 4 })
      ).map(([verb, lower, argument]) => `${lower ? verb.toLowerCase() : verb}${argument === null ? "" : ` ${argument}`}`)
    },
    { weight: 1, arbitrary: fc.constantFrom("USER alice", "PASS wrong", "USER", "PASS", "AUTH TLS", "AUTH XYZ", "REIN", "QUIT") },
    { weight: 1, arbitrary: fc.tuple(fc.stringMatching(/^[A-Za-z]{1,6}$/), fc.string({ maxLength: 20 })).map(([verb, rest]) => `${verb} ${rest}`) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) }
  )

/**
 * Pieces of a control stream: whole lines (CRLF or bare LF), Telnet
 * sequences, CR, LF, NUL, UTF-8 and non-UTF-8 bytes, and long runs whose
 * length is near `maxLineBytes`. `long: false` leaves out over-long paths.
 */
export const streamPieceArbitrary = (
  maxLineBytes: number,
  extra: ReadonlyArray<string> = [],
  options: { readonly long?: boolean } = {}
): fc.Arbitrary<Buffer> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.tuple(commandLineArbitrary(extra, options), fc.constantFrom("\r\n", "\n", "\r\n", "")).map(([line, end]) => Buffer.concat([Buffer.from(line, "utf8"), latin1(end)])) },
    { weight: 2, arbitrary: telnetArbitrary },
    { weight: 2, arbitrary: fc.constantFrom(latin1("\r"), latin1("\n"), latin1("\r\n"), latin1("\u0000"), latin1("\r\r\n"), latin1("\n\r")) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: -2, max: 2 }), fc.constantFrom("A", "é", "\u00ff")).map(([delta, unit]) =>
        Buffer.from(unit.repeat(Math.max(0, maxLineBytes + delta)), unit === "\u00ff" ? "latin1" : "utf8")
      )
    }
  )

/** What a correct reader makes of a whole stream. */
export interface ReferenceLines {
  /** The lines, in order, up to the first one over the limit. */
  readonly lines: ReadonlyArray<string>
  /** A line (complete or not) exceeds the limit: the session must end, the line never be used. */
  readonly tooLong: boolean
}

/**
 * RFC 854 stripping over the whole stream, then lines at LF with one CR before
 * it dropped; lines decoded as UTF-8 when valid, else latin1. An unfinished
 * line at the end counts against the limit too, without a CR that could still
 * turn out to be the start of its CRLF.
 */
export const referenceLines = (stream: Buffer, maxLineBytes: number): ReferenceLines => {
  const data: Array<number> = []
  let i = 0
  while (i < stream.length) {
    const byte = stream[i]!
    if (byte !== IAC) {
      data.push(byte)
      i += 1
      continue
    }
    const command = stream[i + 1]
    if (command === undefined) break
    if (command === IAC) {
      data.push(IAC)
      i += 2
    } else if (command >= WILL && command <= DONT) {
      i += 3
    } else {
      i += 2
    }
  }
  const text = Buffer.from(data)
  const parts = []
  let start = 0
  for (let at = text.indexOf(0x0a); at !== -1; at = text.indexOf(0x0a, start)) {
    parts.push(text.subarray(start, at))
    start = at + 1
  }
  const lines: Array<string> = []
  for (const part of parts) {
    const line = part.length > 0 && part[part.length - 1] === 0x0d ? part.subarray(0, part.length - 1) : part
    if (line.length > maxLineBytes) return { lines, tooLong: true }
    lines.push(line.toString(isUtf8(line) ? "utf8" : "latin1"))
  }
  const tail = text.subarray(start)
  const pending = tail.length > 0 && tail[tail.length - 1] === 0x0d ? tail.length - 1 : tail.length
  return { lines, tooLong: pending > maxLineBytes }
}

/**
 * What is wrong with everything a server sent on a control connection, or
 * undefined when it is nothing but well-formed replies (RFC 959 §4.2):
 * CRLF-terminated lines, each a 3-digit code and " " or "-", multi-line
 * replies whose middle lines start with a space (so none passes for a last
 * line), and no CR, LF or NUL anywhere but in the line ends. With `cut`, the
 * transcript may stop anywhere (the client left): only whole lines are checked.
 */
export const replyTranscriptProblem = (transcript: string, options: { readonly cut?: boolean } = {}): string | undefined => {
  // A client that dropped the connection may have stopped reading in the middle of a reply.
  const whole = options.cut === true ? transcript.slice(0, transcript.lastIndexOf("\r\n") + 2) : transcript
  if (whole === "" && options.cut === true) return undefined
  if (!whole.endsWith("\r\n")) return `does not end with CRLF: ${JSON.stringify(whole.slice(-80))}`
  const body = whole.slice(0, -2)
  if (/[\r\n\u0000]/.test(body.replace(/\r\n/g, ""))) {
    const at = body.replace(/\r\n/g, "  ").search(/[\r\n\u0000]/)
    return `a CR, LF or NUL inside a reply line: ${JSON.stringify(body.slice(Math.max(0, at - 60), at + 20))}`
  }
  let open: string | undefined
  for (const line of body.split("\r\n")) {
    if (open !== undefined) {
      if (line.startsWith(`${open} `)) open = undefined
      else if (!line.startsWith(" ")) return `a middle line of a ${open} reply does not start with a space: ${JSON.stringify(line)}`
      continue
    }
    const match = /^([1-5]\d\d)([ -])/.exec(line)
    if (!match) return `not a reply line: ${JSON.stringify(line.slice(0, 80))}`
    if (match[2] === "-") open = match[1]
  }
  return open === undefined || options.cut === true ? undefined : `multi-line ${open} reply never ended`
}
