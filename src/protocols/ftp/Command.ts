/**
 * Parsing of one FTP control line into a verb and its argument (RFC 959 §5.3).
 *
 * The verb is 3 or 4 ASCII letters, compared case-insensitively; the argument
 * is everything after the single space that follows it, kept byte for byte
 * (further spaces included: a file name may start with a space). Anything
 * looser is refused here, before any handler runs. Arguments with control
 * characters are refused outright: CR and LF would inject lines into replies
 * and logs, NUL would cut C strings, and no legitimate name needs them.
 */
import { Data, Result } from "effect"

/**
 * Every verb this server knows. Verbs outside this list are answered with 502
 * by the dispatch table; parsing does not depend on it.
 * @category models
 */
export const FtpVerb = [
  // RFC 959 §4.1: access control, transfer parameters, service commands
  "USER",
  "PASS",
  "QUIT",
  "REIN",
  "NOOP",
  "SYST",
  "TYPE",
  "MODE",
  "STRU",
  "PWD",
  "CWD",
  "CDUP",
  "MKD",
  "RMD",
  "DELE",
  "RNFR",
  "RNTO",
  "LIST",
  "NLST",
  "RETR",
  "STOR",
  "APPE",
  "STOU",
  "ALLO",
  "REST",
  "ABOR",
  "STAT",
  "HELP",
  "SITE",
  "PASV",
  "PORT",
  // RFC 775 aliases, still sent by some clients (RFC 1123 §4.1.3.1)
  "XPWD",
  "XCWD",
  "XCUP",
  "XMKD",
  "XRMD",
  // RFC 2389: feature negotiation
  "FEAT",
  "OPTS",
  // RFC 2428: extended passive and active modes
  "EPSV",
  "EPRT",
  // RFC 3659: machine listings, size, modification time
  "MLSD",
  "MLST",
  "SIZE",
  "MDTM",
  // draft-somers-ftp-mfxx: setting the modification time
  "MFMT",
  // RFC 2228 / RFC 4217: TLS on the control and data connections
  "AUTH",
  "PBSZ",
  "PROT",
  "CCC"
] as const

/**
 * A verb this server knows.
 * @category models
 */
export type FtpVerb = (typeof FtpVerb)[number]

const knownVerbs: ReadonlySet<string> = new Set(FtpVerb)

/**
 * Whether `verb` (upper case) is one this server knows.
 * @category models
 */
export const isFtpVerb = (verb: string): verb is FtpVerb => knownVerbs.has(verb)

/**
 * A control line that is not a command. The session answers 500 or 501; the
 * line itself is not kept, so it cannot end up in a reply.
 * @category errors
 */
export class BadCommand extends Data.TaggedError("BadCommand")<{
  /** BadVerb: not 3–4 ASCII letters; ControlCharacter: the argument holds a C0 control or DEL. */
  readonly reason: "BadVerb" | "ControlCharacter"
}> {}

/**
 * One parsed command.
 * @category models
 */
export interface Command {
  /** The verb in upper case. */
  readonly verb: string
  /** The rest of the line after the one space following the verb; "" when there is none. */
  readonly argument: string
}

const verbPattern = /^[A-Za-z]{3,4}$/
// C0 controls and DEL: VirtualPath refuses the same set in names.
const controlCharacter = /[\u0000-\u001f\u007f]/

/**
 * Parses one control line (without its terminator).
 * @category constructors
 */
export const parseCommand = (line: string): Result.Result<Command, BadCommand> => {
  const space = line.indexOf(" ")
  const verb = space === -1 ? line : line.slice(0, space)
  if (!verbPattern.test(verb)) return Result.fail(new BadCommand({ reason: "BadVerb" }))
  const argument = space === -1 ? "" : line.slice(space + 1)
  if (controlCharacter.test(argument)) return Result.fail(new BadCommand({ reason: "ControlCharacter" }))
  return Result.succeed({ verb: verb.toUpperCase(), argument })
}
