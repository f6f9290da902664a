/**
 * FTP replies: the reply code table, single- and multi-line formatting with
 * CR/LF/NUL scrubbing, 257 quoting, and the error × verb mapping (every reason
 * answered, the verb-specific codes, no path or client text in a reply).
 */
import { assert, describe, it } from "@effect/vitest"
import { AccessDenied } from "../../src/protocols/common/Access.js"
import { BadCommand, FtpVerb } from "../../src/protocols/ftp/Command.js"
import {
  type FtpError,
  FtpReply,
  ftpRefusalReasons,
  formatReply,
  quotePath,
  refusal,
  replyFor
} from "../../src/protocols/ftp/Replies.js"
import { JailError, type JailErrorReason, jailErrorReasonTags } from "../../src/services/Jail.js"
import { InvalidPath } from "../../src/services/VirtualPath.js"

const sentinel = "/secret\"dir\r\n226 x/host-path"

const reason = (tag: JailErrorReason["_tag"]): JailErrorReason => (tag === "Io" ? { _tag: "Io", code: "EIO" } : { _tag: tag })
const jail = (tag: JailErrorReason["_tag"]) => new JailError({ op: "open", path: sentinel, reason: reason(tag) })

const everyError: ReadonlyArray<FtpError> = [
  ...jailErrorReasonTags.map(jail),
  ...(["ReadNotAllowed", "WriteNotAllowed", "ChownNotAllowed", "ChtimesNotAllowed"] as const).map((r) =>
    new AccessDenied({ path: sentinel, reason: r })
  ),
  ...(["Nul", "ControlCharacter", "InvalidUnicode", "TooLong"] as const).map((problem) => new InvalidPath({ input: sentinel, problem })),
  new BadCommand({ reason: "BadVerb" }),
  new BadCommand({ reason: "ControlCharacter" }),
  ...ftpRefusalReasons.map(refusal)
]

const codeOf = (error: FtpError, verb: string) => replyFor(error, verb).code

describe("FtpReply", () => {
  it("has every code the server may send, once each", () => {
    const codes = Object.values(FtpReply)
    assert.strictEqual(new Set(codes).size, codes.length)
    for (
      const code of [
        110, 120, 125, 150, 200, 202, 211, 212, 213, 214, 215, 220, 221, 225, 226, 227, 229, 230, 234, 250, 257, 331, 332,
        350, 421, 425, 426, 450, 451, 452, 500, 501, 502, 503, 504, 522, 530, 532, 533, 534, 550, 551, 552, 553
      ]
    ) assert.include(codes, code)
    assert.strictEqual(FtpReply.NotLoggedIn, 530)
    assert.strictEqual(FtpReply.FileNameNotAllowed, 553)
  })
})

describe("formatReply", () => {
  it("formats a single line", () => {
    assert.strictEqual(formatReply(200, "OK").toString(), "200 OK\r\n")
    assert.strictEqual(formatReply(230, ["Logged in"]).toString(), "230 Logged in\r\n")
    assert.strictEqual(formatReply(200, []).toString(), "200 \r\n")
  })

  it("formats multi-line replies with continuation lines that start with a space", () => {
    assert.strictEqual(
      formatReply(211, ["Features:", " UTF8", "MDTM", "End"]).toString(),
      "211-Features:\r\n UTF8\r\n MDTM\r\n211 End\r\n"
    )
    assert.strictEqual(formatReply(250, ["Listing", " type=file; a", "End"]).toString(), "250-Listing\r\n type=file; a\r\n250 End\r\n")
    assert.strictEqual(formatReply(214, ["a", "b"]).toString(), "214-a\r\n214 b\r\n")
  })

  it("encodes text as UTF-8", () => {
    assert.deepStrictEqual(formatReply(257, "\"/café\" created"), Buffer.from("257 \"/café\" created\r\n", "utf8"))
  })

  it("replaces CR, LF and NUL so that no reply line can be injected", () => {
    const single = formatReply(550, "a\r\n226 ok\u0000b\rc\nd").toString()
    assert.strictEqual(single, "550 a  226 ok b c d\r\n")
    assert.strictEqual(single.split("\r\n").length, 2)

    const multi = formatReply(211, ["x", "a\r\n226 ok", "226 fake", "\n226 also", "end\r\n226 last"]).toString()
    const lines = multi.split("\r\n")
    assert.strictEqual(lines.pop(), "")
    assert.strictEqual(lines.length, 5)
    assert.strictEqual(lines[0], "211-x")
    for (const line of lines.slice(1, -1)) assert.isTrue(line.startsWith(" "), line)
    assert.strictEqual(lines.at(-1), "211 end  226 last")
    for (const line of lines) assert.isFalse(line.startsWith("226"), line)
  })
})

describe("quotePath", () => {
  it("wraps in double quotes and doubles embedded quotes", () => {
    assert.strictEqual(quotePath("/"), "\"/\"")
    assert.strictEqual(quotePath("/a b"), "\"/a b\"")
    assert.strictEqual(quotePath("/say \"hi\""), "\"/say \"\"hi\"\"\"")
    assert.strictEqual(quotePath("\""), "\"\"\"\"")
  })
})

describe("replyFor", () => {
  it("answers every error for every verb with a 4xx/5xx code and a fixed, path-free text", () => {
    for (const error of everyError) {
      for (const verb of [...FtpVerb, "", "XYZ"]) {
        const { code, text } = replyFor(error, verb)
        const label = `${error._tag}/${"reason" in error ? JSON.stringify(error.reason) : ""}/${verb}`
        if (error._tag === "FtpRefusal" && error.reason === "Quit") assert.strictEqual(code, 221)
        else assert.isTrue(code >= 400 && code < 600, label)
        assert.isAbove(text.length, 0, label)
        assert.notInclude(text, "secret", label)
        assert.notInclude(text, "host-path", label)
        assert.notInclude(text, "EIO", label)
        assert.isFalse(/[\r\n\u0000]/.test(text), label)
        // One fixed text per code and reason: the same for every verb that gets this code.
        assert.deepStrictEqual(replyFor(error, verb.toLowerCase()), { code, text }, label)
      }
    }
  })

  it("answers NotFound with 550 on the file and directory commands", () => {
    for (const verb of ["RETR", "DELE", "CWD", "XCWD", "SIZE", "MDTM", "RNFR", "RMD", "LIST", "MLST", "STOR"]) {
      assert.strictEqual(codeOf(jail("NotFound"), verb), 550, verb)
    }
  })

  it("answers NoSpace with 452", () => {
    for (const verb of ["STOR", "APPE", "STOU", "MKD"]) assert.strictEqual(codeOf(jail("NoSpace"), verb), 452, verb)
  })

  it("answers QuotaExceeded (EDQUOT, EFBIG) with 552", () => {
    for (const verb of ["STOR", "APPE", "STOU", "MKD"]) assert.strictEqual(codeOf(jail("QuotaExceeded"), verb), 552, verb)
  })

  it("answers AlreadyExists with 550 for MKD and 553 for uploads and RNTO", () => {
    assert.strictEqual(codeOf(jail("AlreadyExists"), "MKD"), 550)
    assert.strictEqual(codeOf(jail("AlreadyExists"), "XMKD"), 550)
    for (const verb of ["STOR", "STOU", "APPE", "RNTO"]) assert.strictEqual(codeOf(jail("AlreadyExists"), verb), 553, verb)
  })

  it("answers an invalid name with 553 where a name is created and 550 elsewhere", () => {
    const invalid = new InvalidPath({ input: sentinel, problem: "ControlCharacter" })
    for (const verb of ["STOR", "STOU", "APPE", "MKD", "XMKD", "RNTO"]) {
      assert.deepStrictEqual(replyFor(invalid, verb), { code: 553, text: "File name not allowed" }, verb)
      assert.strictEqual(codeOf(jail("InvalidPath"), verb), 553, verb)
    }
    for (const verb of ["RETR", "CWD", "DELE", "RNFR", "SIZE"]) {
      assert.strictEqual(codeOf(invalid, verb), 550, verb)
      assert.strictEqual(codeOf(jail("InvalidPath"), verb), 550, verb)
    }
  })

  it("answers the other jail reasons with 550, and Io with 451", () => {
    for (const tag of ["PermissionDenied", "SymlinkRefused", "NotEmpty", "NotADirectory", "IsADirectory", "Unsupported"] as const) {
      for (const verb of ["RETR", "STOR", "DELE", "RMD", "CWD", "RNTO"]) assert.strictEqual(codeOf(jail(tag), verb), 550, `${tag} ${verb}`)
    }
    assert.deepStrictEqual(replyFor(jail("Io"), "RETR"), { code: 451, text: "Requested action aborted: local error in processing" })
  })

  it("answers permission checks with 550", () => {
    for (const r of ["ReadNotAllowed", "WriteNotAllowed", "ChownNotAllowed", "ChtimesNotAllowed"] as const) {
      assert.strictEqual(codeOf(new AccessDenied({ path: sentinel, reason: r }), "MFMT"), 550)
    }
  })

  it("answers session refusals", () => {
    const expected = {
      NotLoggedIn: 530,
      LoginFailed: 530,
      BadSequence: 503,
      TlsRequired: 534,
      ProtRequired: 534,
      PbszRequired: 503,
      CccRefused: 534,
      ActiveModeDisabled: 502,
      BadPort: 501,
      NoDataConnection: 425,
      DataConnectionFailed: 425,
      TransferAborted: 426,
      TransferInProgress: 503,
      RestBeyondEnd: 554,
      AlloExceeded: 552,
      AlloMismatch: 552,
      NotADirectory: 550,
      NotAFile: 550,
      Unsupported: 502,
      UnsupportedParameter: 504,
      SyntaxError: 501,
      Quit: 221
    } as const
    for (const r of ftpRefusalReasons) assert.strictEqual(codeOf(refusal(r), "RETR"), expected[r], r)
  })

  it("uses the verb where RFCs ask for a specific code", () => {
    assert.strictEqual(codeOf(refusal("UnsupportedParameter"), "EPSV"), 522)
    assert.strictEqual(codeOf(refusal("UnsupportedParameter"), "EPRT"), 522)
    assert.strictEqual(codeOf(refusal("UnsupportedParameter"), "TYPE"), 504)
    assert.strictEqual(codeOf(refusal("SyntaxError"), ""), 500)
    assert.strictEqual(codeOf(refusal("SyntaxError"), "REST"), 501)
    assert.strictEqual(codeOf(new BadCommand({ reason: "BadVerb" }), ""), 500)
    assert.strictEqual(codeOf(new BadCommand({ reason: "ControlCharacter" }), "STOR"), 501)
  })

  it("is not fooled by verbs named like object properties", () => {
    for (const verb of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
      assert.strictEqual(codeOf(jail("NotFound"), verb), 550, verb)
    }
  })
})
