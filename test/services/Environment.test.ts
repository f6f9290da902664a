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

  it.effect("pre-auth caps and bans: counts are decoded as numbers, durations as strings; a bad count names its field", () =>
    Effect.gen(function*() {
      const env = {
        PORTCULLIS_MAX_PRE_AUTH_CONNECTIONS: "100",
        PORTCULLIS_MAX_PRE_AUTH_CONNECTIONS_PER_IP: "0",
        PORTCULLIS_BANS_MAX_FAILURES: "5",
        PORTCULLIS_BANS_WINDOW: "10 minutes",
        PORTCULLIS_BANS_DURATION: "1 hour"
      }
      const config = yield* decodeConfig(applyEnvironment({ bans: { maxFailures: 3 } }, env))
      assert.strictEqual(config.maxPreAuthConnections, 100)
      assert.strictEqual(config.maxPreAuthConnectionsPerIp, 0)
      assert.deepStrictEqual(config.bans, { maxFailures: 5, window: "10 minutes", duration: "1 hour" })
      assert.isUndefined(config.sftp, "bans is not a protocol section")
      const defaults = yield* decodeConfig({})
      assert.deepStrictEqual([defaults.maxPreAuthConnections, defaults.maxPreAuthConnectionsPerIp, defaults.bans], [256, 32, { maxFailures: 10, window: "1 minute", duration: "15 minutes" }])
      const bad = yield* Effect.flip(decodeConfig(applyEnvironment({}, { PORTCULLIS_BANS_MAX_FAILURES: "-1" })))
      assert.include(bad.message, "bans.maxFailures")
      const negative = yield* Effect.flip(decodeConfig({ maxPreAuthConnectionsPerIp: -1 }))
      assert.include(negative.message, "maxPreAuthConnectionsPerIp")
    }))

  it.effect("a bad override is reported like a bad field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decodeConfig(applyEnvironment({}, { PORTCULLIS_SHUTDOWN_TIMEOUT: "soon" })))
      assert.include(error.message, "shutdownTimeout")
      const port = yield* Effect.flip(decodeConfig(applyEnvironment({}, { PORTCULLIS_SFTP_ADDRESS: "localhost" })))
      assert.include(port.message, "sftp.address")
    }))
})
