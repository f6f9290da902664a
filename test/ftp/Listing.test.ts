/**
 * Listing formats: `ls -l` lines against fixed strings, names that must not
 * break a listing, RFC 3659 facts with perm letters, and MDTM/MFMT times.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  formatListLine,
  formatMdtm,
  formatMlsxFacts,
  formatNlstLine,
  parseMfmtTime
} from "../../src/protocols/ftp/Listing.js"
import type { FileStat } from "../../src/services/Jail.js"

const stat = (overrides: Partial<FileStat>): FileStat => ({
  type: "file",
  mode: 0o100644,
  size: 123,
  uid: 1000,
  gid: 1000,
  nlink: 1,
  ino: 131,
  dev: 2049,
  atimeMs: 0,
  mtimeMs: Date.UTC(2024, 0, 1, 12, 34, 56),
  ...overrides
})

const dir = stat({ type: "directory", mode: 0o40750, size: 4096, nlink: 1 })
const now = Date.UTC(2024, 2, 1, 0, 0, 0)
const all = { canRead: true, canWrite: true }

describe("formatListLine", () => {
  it("formats a recent directory in the ls -l layout", () => {
    assert.strictEqual(formatListLine({ name: "name", stat: dir }, now), "drwxr-x---    1 1000     1000         4096 Jan 01 12:34 name")
  })

  it("shows the year for entries older than six months", () => {
    const old = stat({ uid: 0, gid: 0, mtimeMs: Date.UTC(2020, 4, 17, 8, 0) })
    assert.strictEqual(formatListLine({ name: "a.txt", stat: old }, now), "-rw-r--r--    1 0        0             123 May 17  2020 a.txt")
  })

  it("shows the year for entries in the future", () => {
    const future = stat({ mtimeMs: now + 60_000 })
    assert.strictEqual(formatListLine({ name: "f", stat: future }, now), "-rw-r--r--    1 1000     1000          123 Mar 01  2024 f")
  })

  it("shows the time just inside six months and the year just outside", () => {
    const inside = stat({ mtimeMs: now - 182 * 86_400_000 })
    const outside = stat({ mtimeMs: now - 183 * 86_400_000 })
    assert.match(formatListLine({ name: "in", stat: inside }, now), / Sep 01 00:00 in$/)
    assert.match(formatListLine({ name: "out", stat: outside }, now), / Aug 31  2023 out$/)
  })

  it("pads wide fields without truncating them", () => {
    const big = stat({ size: 12_345_678_901, uid: 4_000_000_000, gid: 123_456_789, nlink: 12345 })
    assert.strictEqual(
      formatListLine({ name: "big", stat: big }, now),
      "-rw-r--r-- 12345 4000000000 123456789 12345678901 Jan 01 12:34 big"
    )
  })

  it("renders type letters and special permission bits", () => {
    const perms = (s: Partial<FileStat>) => formatListLine({ name: "x", stat: stat(s) }, now).slice(0, 10)
    assert.strictEqual(perms({ mode: 0o104755 }), "-rwsr-xr-x")
    assert.strictEqual(perms({ mode: 0o104655 }), "-rwSr-xr-x")
    assert.strictEqual(perms({ mode: 0o102755 }), "-rwxr-sr-x")
    assert.strictEqual(perms({ mode: 0o102745 }), "-rwxr-Sr-x")
    assert.strictEqual(perms({ type: "directory", mode: 0o41777 }), "drwxrwxrwt")
    assert.strictEqual(perms({ type: "directory", mode: 0o41776 }), "drwxrwxrwT")
    assert.strictEqual(perms({ type: "symlink", mode: 0o120777 }), "lrwxrwxrwx")
    assert.strictEqual(perms({ type: "other", mode: 0o10644 }), "prw-r--r--")
    assert.strictEqual(perms({ type: "other", mode: 0o20600 }), "crw-------")
    assert.strictEqual(perms({ type: "other", mode: 0o60600 }), "brw-------")
    assert.strictEqual(perms({ type: "other", mode: 0o140755 }), "srwxr-xr-x")
    assert.strictEqual(perms({ mode: 0o100000 }), "----------")
  })

  it("keeps leading and inner spaces of names", () => {
    assert.isTrue(formatListLine({ name: " two  spaces", stat: stat({}) }, now).endsWith("12:34  two  spaces"))
  })

  it("skips names with CR, LF or NUL and shows other control characters as ?", () => {
    for (const name of ["a\r\n-rw-r--r-- 1 0 0 1 Jan 01 12:34 forged", "a\rb", "a\nb", "a\u0000b"]) {
      assert.strictEqual(formatListLine({ name, stat: stat({}) }, now), "", JSON.stringify(name))
      assert.strictEqual(formatNlstLine({ name, stat: stat({}) }), "", JSON.stringify(name))
      assert.strictEqual(formatMlsxFacts(name, stat({}), all), "", JSON.stringify(name))
    }
    assert.isTrue(formatListLine({ name: "a\tb\u001bc\u007f", stat: stat({}) }, now).endsWith(" a?b?c?"))
    assert.strictEqual(formatNlstLine({ name: "a\tb", stat: stat({}) }), "a?b")
    assert.strictEqual(formatNlstLine({ name: "café", stat: stat({}) }), "café")
  })
})

describe("formatMlsxFacts", () => {
  it("formats a file with perm letters from the user's rights", () => {
    const file = stat({})
    assert.strictEqual(formatMlsxFacts("a.txt", file, all), "type=file;size=123;modify=20240101123456;perm=rwadf;unique=2049-131; a.txt")
    assert.strictEqual(
      formatMlsxFacts("a.txt", file, { canRead: true, canWrite: false }),
      "type=file;size=123;modify=20240101123456;perm=r;unique=2049-131; a.txt"
    )
    assert.strictEqual(
      formatMlsxFacts("a.txt", file, { canRead: false, canWrite: true }),
      "type=file;size=123;modify=20240101123456;perm=wadf;unique=2049-131; a.txt"
    )
  })

  it("formats directories, cdir and pdir", () => {
    assert.strictEqual(formatMlsxFacts("sub", dir, all), "type=dir;modify=20240101123456;perm=elcmdfp;unique=2049-131; sub")
    assert.strictEqual(formatMlsxFacts("sub", dir, { canRead: true, canWrite: false }), "type=dir;modify=20240101123456;perm=el;unique=2049-131; sub")
    assert.strictEqual(formatMlsxFacts("sub", dir, { canRead: false, canWrite: true }), "type=dir;modify=20240101123456;perm=ecmdfp;unique=2049-131; sub")
    assert.strictEqual(formatMlsxFacts("sub", dir, { canRead: false, canWrite: false }), "type=dir;modify=20240101123456;perm=e;unique=2049-131; sub")
    assert.isTrue(formatMlsxFacts(".", dir, all).startsWith("type=cdir;"))
    assert.isTrue(formatMlsxFacts("..", dir, all).startsWith("type=pdir;"))
  })

  it("formats links and special files", () => {
    const link = stat({ type: "symlink", mode: 0o120777, size: 7 })
    assert.strictEqual(formatMlsxFacts("l", link, all), "type=OS.unix=symlink;modify=20240101123456;perm=df;unique=2049-131; l")
    assert.strictEqual(formatMlsxFacts("l", link, { canRead: true, canWrite: false }), "type=OS.unix=symlink;modify=20240101123456;perm=;unique=2049-131; l")
    assert.isTrue(formatMlsxFacts("p", stat({ type: "other", mode: 0o10644 }), all).startsWith("type=OS.unix=fifo;"))
  })

  it("prints the MLST pathname instead of the name when given", () => {
    assert.strictEqual(
      formatMlsxFacts("a.txt", stat({}), { ...all, pathForMlst: "/dir/a.txt" }),
      "type=file;size=123;modify=20240101123456;perm=rwadf;unique=2049-131; /dir/a.txt"
    )
    assert.strictEqual(formatMlsxFacts("a", stat({}), { ...all, pathForMlst: "/x\r\n250 End" }), "")
  })
})

describe("formatMdtm / parseMfmtTime", () => {
  it("formats UTC times without fraction", () => {
    assert.strictEqual(formatMdtm(Date.UTC(2024, 0, 1, 12, 34, 56, 789)), "20240101123456")
    assert.strictEqual(formatMdtm(0), "19700101000000")
    assert.strictEqual(formatMdtm(Date.UTC(2000, 1, 29, 23, 59, 59)), "20000229235959")
  })

  it("clamps times outside 1970-9999", () => {
    assert.strictEqual(formatMdtm(-1), "19700101000000")
    assert.strictEqual(formatMdtm(Number.NaN), "19700101000000")
    assert.strictEqual(formatMdtm(1e16), "99991231235959")
  })

  it("parses strict YYYYMMDDHHMMSS[.sss]", () => {
    assert.strictEqual(parseMfmtTime("20240101123456"), Date.UTC(2024, 0, 1, 12, 34, 56))
    assert.strictEqual(parseMfmtTime("20240101123456.5"), Date.UTC(2024, 0, 1, 12, 34, 56, 500))
    assert.strictEqual(parseMfmtTime("20240101123456.05"), Date.UTC(2024, 0, 1, 12, 34, 56, 50))
    assert.strictEqual(parseMfmtTime("20240101123456.123"), Date.UTC(2024, 0, 1, 12, 34, 56, 123))
    assert.strictEqual(parseMfmtTime("20240229000000"), Date.UTC(2024, 1, 29))
    assert.strictEqual(parseMfmtTime("19700101000000"), 0)
    assert.strictEqual(parseMfmtTime("99991231235959"), Date.UTC(9999, 11, 31, 23, 59, 59))
  })

  it("refuses anything else", () => {
    for (
      const input of [
        "",
        "2024010112345",
        "202401011234567",
        "20240230120000",
        "20230229000000",
        "20241301000000",
        "20240001000000",
        "20240100000000",
        "20240101240000",
        "20240101126000",
        "20240101123460",
        "19691231235959",
        "00000101000000",
        "+2024010112345",
        " 20240101123456",
        "20240101123456 ",
        "20240101123456.",
        "20240101123456.1234",
        "2024-01-01 12:34:56",
        "2024010112345a",
        "２０２４0101123456"
      ]
    ) assert.isUndefined(parseMfmtTime(input), JSON.stringify(input))
  })

  it("round-trips through formatMdtm at second precision", () => {
    let seed = 12345
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0)
    for (let i = 0; i < 500; i++) {
      const ms = (next() * 4096 + (next() % 4096)) % 253_402_300_800_000
      assert.strictEqual(parseMfmtTime(formatMdtm(ms)), Math.floor(ms / 1000) * 1000, String(ms))
    }
  })
})
