/**
 * The incremental, bounded reader of FTP control lines.
 *
 * The control connection feeds every chunk it receives to `push`, which answers
 * the command lines completed by that chunk. The reader owns three security rules:
 *
 * - **Bounded.** A line may hold at most `maxLineBytes` bytes (after Telnet
 *   processing, before the terminator). A longer line fails the reader with
 *   `LineTooLong` and the reader stays failed: the line is never cut into two
 *   commands, which is how ProFTPD CVE-2008-4242 turned one long URL into a
 *   second, attacker-chosen command. Bytes past the limit are never buffered,
 *   so a 1 MiB line without a newline costs at most `maxLineBytes` plus a small
 *   constant.
 * - **Telnet is stripped, not interpreted** (RFC 959 §4.1.3 says the control
 *   connection is Telnet, RFC 854). IAC IAC is one 0xFF data byte; IAC with
 *   WILL/WONT/DO/DONT and its option byte is dropped (the server never
 *   negotiates options); IAC with any other byte (IP and DM of an ABOR's Synch,
 *   AYT, NOP, ...) is dropped. Sequences may be split across chunks anywhere.
 * - **Remainder for STARTTLS.** `takeRemainder` hands out what arrived after the
 *   last complete line, so the session can refuse bytes pipelined after
 *   AUTH TLS (Postfix CVE-2011-0411, Pure-FTPd CVE-2011-1575).
 *
 * A line ends at LF; a CR directly before that LF is dropped with it, so both
 * CRLF and the bare LF that many clients send end a line. A CR anywhere else
 * stays in the line as data: the command parser refuses control characters in
 * arguments, so a lone CR cannot smuggle anything further. Empty lines are
 * returned as "" (the command parser answers them).
 *
 * Lines are decoded as UTF-8 when they are valid UTF-8 (RFC 2640), and as
 * latin1 otherwise: many clients still send names in a legacy 8-bit charset,
 * and latin1 maps every byte to one character, so nothing is lost or replaced
 * by U+FFFD behind the user's back (two different byte strings never decode to
 * the same name).
 */
import { Data, Result } from "effect"
import { isUtf8 } from "node:buffer"

/**
 * A control line exceeded the reader's limit; the session must end.
 * @category errors
 */
export class LineTooLong extends Data.TaggedError("LineTooLong")<{
  readonly maxLineBytes: number
}> {
  override get message(): string {
    return `control line longer than ${this.maxLineBytes} bytes`
  }
}

/**
 * Options of `makeLineReader`.
 * @category models
 */
export interface LineReaderOptions {
  /**
   * Longest accepted line in bytes, without the terminator and after Telnet
   * processing. Default 4096. Values below 1 are raised to 1.
   */
  readonly maxLineBytes?: number
}

/**
 * An incremental control-line reader. Not shared between connections.
 * @category models
 */
export interface LineReader {
  /**
   * Consumes `chunk` and answers the lines it completed, in order. Fails with
   * `LineTooLong` when a line exceeds the limit, and on every later call; lines
   * completed earlier in the same chunk are dropped with it (the session ends).
   */
  push(chunk: Buffer): Result.Result<ReadonlyArray<string>, LineTooLong>
  /** Data bytes of the unfinished line currently held (never more than the limit). */
  buffered(): number
  /**
   * Returns and clears the raw bytes received after the last complete line
   * (the unfinished line, Telnet bytes included), and resets the reader to the
   * start of a line. At most `remainderCapBytes` of them are kept: the bytes
   * are only ever used to see whether anything followed a line, never parsed.
   */
  takeRemainder(): Buffer
}

/**
 * Default line limit in bytes.
 * @category models
 */
export const defaultMaxLineBytes = 4096

/**
 * Most raw bytes `takeRemainder` returns; enough to show what followed a line.
 * @category models
 */
export const remainderCapBytes = 256

/** Telnet command bytes (RFC 854). */
const Telnet = {
  /** Interpret As Command. */
  Iac: 0xff,
  /** WILL, WONT, DO, DONT: the first and last of the option-negotiation commands, each followed by an option byte. */
  Will: 0xfb,
  Dont: 0xfe
} as const

const Cr = 0x0d
const Lf = 0x0a

type TelnetState = "data" | "iac" | "option"

const decode = (bytes: Buffer): string => bytes.toString(isUtf8(bytes) ? "utf8" : "latin1")

/**
 * A new reader.
 * @category constructors
 */
export const makeLineReader = (options?: LineReaderOptions): LineReader => {
  const maxLineBytes = Math.max(1, Math.floor(options?.maxLineBytes ?? defaultMaxLineBytes))
  const tooLong = new LineTooLong({ maxLineBytes })
  let line: Buffer | undefined = Buffer.allocUnsafe(maxLineBytes)
  let length = 0
  // A CR is held back as a flag until the next data byte shows whether it ends the line.
  let pendingCr = false
  let telnet: TelnetState = "data"
  const remainder = Buffer.allocUnsafe(remainderCapBytes)
  let remainderLength = 0

  const reset = () => {
    length = 0
    pendingCr = false
    telnet = "data"
    remainderLength = 0
  }

  const fail = () => {
    line = undefined
    reset()
    return Result.fail(tooLong)
  }

  /** Appends one data byte; false when the line would exceed the limit. */
  const append = (target: Buffer, byte: number): boolean => {
    if (length >= maxLineBytes) return false
    target[length++] = byte
    return true
  }

  return {
    push: (chunk) => {
      const target = line
      if (target === undefined) return Result.fail(tooLong)
      const lines: Array<string> = []
      for (let i = 0; i < chunk.length; i++) {
        const byte = chunk[i]!
        if (remainderLength < remainderCapBytes) remainder[remainderLength++] = byte
        if (telnet === "iac") {
          if (byte === Telnet.Iac) {
            telnet = "data"
            // IAC IAC is a data byte: fall through to the data handling below.
          } else {
            telnet = byte >= Telnet.Will && byte <= Telnet.Dont ? "option" : "data"
            continue
          }
        } else if (telnet === "option") {
          telnet = "data"
          continue
        } else if (byte === Telnet.Iac) {
          telnet = "iac"
          continue
        }
        if (byte === Lf) {
          pendingCr = false
          lines.push(decode(target.subarray(0, length)))
          length = 0
          remainderLength = 0
          continue
        }
        if (pendingCr) {
          pendingCr = false
          if (!append(target, Cr)) return fail()
        }
        if (byte === Cr) pendingCr = true
        else if (!append(target, byte)) return fail()
      }
      return Result.succeed(lines)
    },
    buffered: () => length,
    takeRemainder: () => {
      const bytes = Buffer.from(remainder.subarray(0, remainderLength))
      reset()
      return bytes
    }
  }
}
