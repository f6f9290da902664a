import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { decodeConfig } from "../../src/config/Config.js"
import { applyEnvironment } from "../../src/config/Environment.js"

describe("environment overrides", () => {
  it("replace fields before validation and turn a protocol on", () => {
    const input = { sftp: { address: "127.0.0.1:2022", kex: ["curve25519-sha256"] }, users: [] }
    const env = {
      PORTCULLIS_SFTP_ADDRESS: "0.0.0.0:22",
      PORTCULLIS_FTP_ADDRESS: "0.0.0.0:21",
      PORTCULLIS_FTP_REQUIRE_TLS: "false",
      PORTCULLIS_IDLE_TIMEOUT: "5 minutes",
      UNRELATED: "x"
    }
    assert.deepStrictEqual(applyEnvironment(input, env), {
      sftp: { address: "0.0.0.0:22", kex: ["curve25519-sha256"] },
      ftp: { address: "0.0.0.0:21", requireTLS: false },
      idleTimeout: "5 minutes",
      users: []
    })
    assert.deepStrictEqual(input.sftp.address, "127.0.0.1:2022", "the input is not changed")
  })

  it.effect("a bad override is reported like a bad field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decodeConfig(applyEnvironment({}, { PORTCULLIS_SHUTDOWN_TIMEOUT: "soon" })))
      assert.include(error.message, "shutdownTimeout")
      const port = yield* Effect.flip(decodeConfig(applyEnvironment({}, { PORTCULLIS_SFTP_ADDRESS: "localhost" })))
      assert.include(port.message, "sftp.address")
    }))
})
