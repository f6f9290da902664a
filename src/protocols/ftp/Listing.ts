/**
 * Directory listings and timestamps as FTP clients read them: `ls -l` lines for
 * LIST, bare names for NLST, RFC 3659 facts for MLSD/MLST, and the
 * YYYYMMDDHHMMSS times of MDTM and MFMT. Pure formatting, no I/O.
 *
 * A listing is a stream of CRLF-separated lines on the data connection, and
 * every client splits it at line breaks. A name holding CR, LF or NUL would
 * therefore let whoever created that file forge further entries in other
 * users' listings, so such entries are skipped: the formatters return "" for
 * them, and the session drops empty lines. Other control characters are shown
 * as "?" (such names cannot be opened over FTP anyway: paths with control
 * characters are refused before they reach the jail).
 *
 * All times are UTC.
 */
import type { DirEntry, FileStat } from "../../services/Jail.js"

/**
 * What the logged-in user may do; `perm` facts are computed from it.
 * @category models
 */
export interface ListingPermissions {
  readonly canRead: boolean
  readonly canWrite: boolean
}

/**
 * Options of `formatMlsxFacts`.
 * @category models
 */
export interface MlsxOptions extends ListingPermissions {
  /** MLST: the pathname to print after the facts instead of `name`. */
  readonly pathForMlst?: string
}

/**
 * The FEAT line that announces MLST and the facts `formatMlsxFacts` emits (RFC 3659 §7.8).
 * @category models
 */
export const mlstFeature = "MLST type*;size*;modify*;perm*;unique*;"

const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"] as const

/** Half of an average Gregorian year, the "recent" window of GNU ls. */
const sixMonthsMs = (31_556_952 / 2) * 1000

/** The latest instant with a 4-digit year (9999-12-31T23:59:59.999Z). */
const maxTimeMs = 253_402_300_799_999

const breaksLines = /[\r\n\u0000]/
const controlCharacter = /[\u0000-\u001f\u007f]/g

/** The name as it may appear in a listing, or undefined when it must be skipped. */
const displayName = (name: string): string | undefined =>
  breaksLines.test(name) ? undefined : name.replace(controlCharacter, "?")

const two = (n: number) => String(n).padStart(2, "0")

const clampTime = (ms: number): Date => new Date(Number.isFinite(ms) ? Math.min(Math.max(Math.floor(ms), 0), maxTimeMs) : 0)

// --- ls -l ---------------------------------------------------------------------------

const S_IFMT = 0o170000

const typeLetter = (stat: FileStat): string => {
  switch (stat.type) {
    case "file":
      return "-"
    case "directory":
      return "d"
    case "symlink":
      return "l"
    case "other":
      switch (stat.mode & S_IFMT) {
        case 0o010000:
          return "p"
        case 0o020000:
          return "c"
        case 0o060000:
          return "b"
        case 0o140000:
          return "s"
        default:
          return "?"
      }
  }
}

/** One rwx triple; `special` is setuid/setgid/sticky, shown in the x position. */
const triple = (mode: number, shift: number, special: boolean, specialLetter: "s" | "t"): string => {
  const bits = (mode >> shift) & 0o7
  const x = bits & 0o1
    ? special ? specialLetter : "x"
    : special
    ? specialLetter.toUpperCase()
    : "-"
  return `${bits & 0o4 ? "r" : "-"}${bits & 0o2 ? "w" : "-"}${x}`
}

const permissionString = (stat: FileStat): string =>
  typeLetter(stat) +
  triple(stat.mode, 6, (stat.mode & 0o4000) !== 0, "s") +
  triple(stat.mode, 3, (stat.mode & 0o2000) !== 0, "s") +
  triple(stat.mode, 0, (stat.mode & 0o1000) !== 0, "t")

/** "Mmm dd HH:MM" within six months before `now`, otherwise (older or in the future) "Mmm dd  YYYY". */
const lsDate = (mtimeMs: number, now: number): string => {
  const date = clampTime(mtimeMs)
  const age = now - date.getTime()
  const day = `${months[date.getUTCMonth()]!} ${two(date.getUTCDate())}`
  return age >= 0 && age < sixMonthsMs
    ? `${day} ${two(date.getUTCHours())}:${two(date.getUTCMinutes())}`
    : `${day}  ${date.getUTCFullYear()}`
}

/**
 * One LIST line in the `ls -l` layout that FileZilla, curl, lftp, Python's
 * ftplib and basic-ftp parse, e.g.
 * "drwxr-x---    1 1000     1000         4096 Jan 01 12:34 name" (numeric owner
 * and group, UTC times, `now` in ms since the epoch). Returns "" when the name
 * holds CR, LF or NUL: the entry must be skipped.
 * @category constructors
 */
export const formatListLine = (entry: DirEntry, now: number): string => {
  const name = displayName(entry.name)
  if (name === undefined) return ""
  const { stat } = entry
  return `${permissionString(stat)} ${String(stat.nlink).padStart(4)} ${String(stat.uid).padEnd(8)} ${
    String(stat.gid).padEnd(8)
  } ${String(stat.size).padStart(8)} ${lsDate(stat.mtimeMs, now)} ${name}`
}

/**
 * One NLST line: the name alone, or "" when it holds CR, LF or NUL (skip it).
 * @category constructors
 */
export const formatNlstLine = (entry: DirEntry): string => displayName(entry.name) ?? ""

// --- MLSD / MLST ---------------------------------------------------------------------

const mlsxType = (name: string, stat: FileStat): string => {
  switch (stat.type) {
    case "file":
      return "file"
    case "directory":
      return name === "." ? "cdir" : name === ".." ? "pdir" : "dir"
    case "symlink":
      return "OS.unix=symlink"
    case "other":
      switch (stat.mode & S_IFMT) {
        case 0o010000:
          return "OS.unix=fifo"
        case 0o020000:
          return "OS.unix=chr"
        case 0o060000:
          return "OS.unix=blk"
        case 0o140000:
          return "OS.unix=socket"
        default:
          return "OS.unix=special"
      }
  }
}

/**
 * RFC 3659 §7.5.5 perm letters. Files: r (RETR), w and a (STOR, APPE), d (DELE),
 * f (RNFR). Directories: e (CWD, always allowed), l (LIST), c and m (STOR, MKD
 * inside), d, f, p (purge). Links and special files can only be removed or renamed.
 */
const permFact = (stat: FileStat, { canRead, canWrite }: ListingPermissions): string => {
  switch (stat.type) {
    case "file":
      return `${canRead ? "r" : ""}${canWrite ? "wadf" : ""}`
    case "directory":
      return `e${canRead ? "l" : ""}${canWrite ? "cmdfp" : ""}`
    case "symlink":
    case "other":
      return canWrite ? "df" : ""
  }
}

/**
 * The MLSD line or MLST fact line of one entry (RFC 3659 §7):
 * "type=file;size=123;modify=20240101123456;perm=rwadf;unique=2049-131; name".
 * `size` is given for regular files only; `unique` is "<dev>-<ino>". The
 * caller adds the leading space MLST needs. Returns "" when the name holds CR,
 * LF or NUL: the entry must be skipped.
 * @category constructors
 */
export const formatMlsxFacts = (name: string, stat: FileStat, options: MlsxOptions): string => {
  const shown = displayName(options.pathForMlst ?? name)
  if (shown === undefined) return ""
  const size = stat.type === "file" ? `size=${stat.size};` : ""
  return `type=${mlsxType(name, stat)};${size}modify=${formatMdtm(stat.mtimeMs)};perm=${permFact(stat, options)};unique=${stat.dev}-${stat.ino}; ${shown}`
}

// --- MDTM / MFMT ---------------------------------------------------------------------

/**
 * A time as RFC 3659 §2.3 time-val without fraction: YYYYMMDDHHMMSS in UTC.
 * Times before 1970 or after 9999 are clamped to that range.
 * @category constructors
 */
export const formatMdtm = (ms: number): string => {
  const date = clampTime(ms)
  return `${String(date.getUTCFullYear()).padStart(4, "0")}${two(date.getUTCMonth() + 1)}${two(date.getUTCDate())}${
    two(date.getUTCHours())
  }${two(date.getUTCMinutes())}${two(date.getUTCSeconds())}`
}

const mfmtPattern = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{1,3}))?$/

/**
 * The time of an MFMT argument (draft-somers-ftp-mfxx), in ms since the epoch:
 * exactly YYYYMMDDHHMMSS in UTC, optionally followed by "." and 1–3 digits of
 * fraction. Undefined for anything else: a date that does not exist (Feb 30,
 * hour 24, second 60), a year before 1970, signs, spaces or more digits.
 * @category constructors
 */
export const parseMfmtTime = (s: string): number | undefined => {
  const match = mfmtPattern.exec(s)
  if (match === null) return undefined
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number]
  const fraction = match[7] === undefined ? 0 : Number(match[7].padEnd(3, "0"))
  if (year < 1970 || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return undefined
  const ms = Date.UTC(year, month - 1, day, hour, minute, second, fraction)
  // Date.UTC rolls Feb 30 over into March: a day that does not exist changes the month.
  const date = new Date(ms)
  return day >= 1 && date.getUTCMonth() === month - 1 && date.getUTCDate() === day ? ms : undefined
}
