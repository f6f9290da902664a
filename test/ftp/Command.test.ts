/**
 * Parsing control lines into verb and argument: case, spaces kept in
 * arguments, malformed verbs and control characters refused.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { type BadCommand, type Command, FtpVerb, isFtpVerb, parseCommand } from "../../src/protocols/ftp/Command.js"

const ok = (line: string): Command => {
  const result = parseCommand(line)
  assert.isTrue(Result.isSuccess(result), JSON.stringify(line))
  return Result.isSuccess(result) ? result.success : { verb: "", argument: "" }
}

const refused = (line: string): BadCommand["reason"] | undefined => {
  const result = parseCommand(line)
  assert.isTrue(Result.isFailure(result), JSON.stringify(line))
  return Result.isFailure(result) ? result.failure.reason : undefined
}

describe("parseCommand", () => {
  it("splits verb and argument at the first space", () => {
    assert.deepStrictEqual(ok("USER alice"), { verb: "USER", argument: "alice" })
    assert.deepStrictEqual(ok("RETR dir/file name.txt"), { verb: "RETR", argument: "dir/file name.txt" })
  })

  it("upper-cases the verb", () => {
    assert.deepStrictEqual(ok("user alice"), { verb: "USER", argument: "alice" })
    assert.deepStrictEqual(ok("pWd"), { verb: "PWD", argument: "" })
  })

  it("keeps every space after the first one", () => {
    assert.deepStrictEqual(ok("STOR  leading"), { verb: "STOR", argument: " leading" })
    assert.deepStrictEqual(ok("STOR a  b "), { verb: "STOR", argument: "a  b " })
    assert.deepStrictEqual(ok("CWD "), { verb: "CWD", argument: "" })
    assert.deepStrictEqual(ok("MKD   "), { verb: "MKD", argument: "  " })
  })

  it("gives an empty argument when there is none", () => {
    assert.deepStrictEqual(ok("NOOP"), { verb: "NOOP", argument: "" })
    assert.deepStrictEqual(ok("CCC"), { verb: "CCC", argument: "" })
  })

  it("accepts non-ASCII arguments", () => {
    assert.deepStrictEqual(ok("STOR café €.txt"), { verb: "STOR", argument: "café €.txt" })
  })

  it("refuses verbs that are not 3-4 ASCII letters", () => {
    for (const line of ["", " USER a", "US", "USERS x", "US3R", "ÜSER", "USER\tx", "NO-P", "X", "\u0000USR", "RETR\r"]) {
      assert.strictEqual(refused(line), "BadVerb", JSON.stringify(line))
    }
  })

  it("refuses arguments with control characters", () => {
    for (const c of ["\u0000", "\r", "\n", "\t", "\u001b", "\u001f", "\u007f"]) {
      assert.strictEqual(refused(`STOR a${c}b`), "ControlCharacter", JSON.stringify(c))
    }
    assert.strictEqual(refused("RNTO x\r\n226 ok"), "ControlCharacter")
  })

  it("parses every verb the server knows", () => {
    assert.strictEqual(FtpVerb.length, 49)
    assert.strictEqual(new Set(FtpVerb).size, FtpVerb.length)
    for (const verb of FtpVerb) {
      assert.deepStrictEqual(ok(`${verb.toLowerCase()} x`), { verb, argument: "x" })
      assert.isTrue(isFtpVerb(verb))
    }
    for (
      const verb of "USER PASS QUIT NOOP SYST TYPE MODE STRU PWD XPWD CWD XCWD CDUP XCUP MKD XMKD RMD XRMD DELE RNFR RNTO LIST NLST RETR STOR APPE STOU ALLO REST ABOR STAT HELP SITE FEAT OPTS EPSV EPRT PASV PORT MLSD MLST SIZE MDTM MFMT AUTH PBSZ PROT CCC REIN"
        .split(" ")
    ) assert.isTrue(isFtpVerb(verb), verb)
    assert.isFalse(isFtpVerb("LPSV"))
    assert.isFalse(isFtpVerb("user"))
  })
})
