/**
 * ssh2's native crypto binding: it loads under the Node 24 this project runs
 * on (without it ciphers fall back to JavaScript at a tenth of the speed), and
 * its wrapper objects can be garbage collected from any collection. Node 24's
 * node::ObjectWrap asserts a current Node context in its destructor, which a
 * collection started by an allocation in JIT-compiled code does not have; the
 * install script builds the binding with native/ssh2-object-wrap.h instead.
 * Built against the stock header, the child process below aborts with
 * "Assertion failed: (env) != nullptr" within a second.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)

describe("ssh2 crypto binding", () => {
  it("runs on Node 24 with the native binding loaded", () => {
    assert.isAtLeast(Number(process.versions.node.split(".")[0]), 24)
    const crypto = require("ssh2/lib/protocol/crypto.js") as { bindingAvailable: boolean }
    assert.isTrue(crypto.bindingAvailable)
  })

  it("survives collections of its cipher objects started from JavaScript allocations", () => {
    const script = `
      const { AESGCMCipher, AESGCMDecipher, ChaChaPolyCipher } = require(${JSON.stringify(require.resolve("ssh2/lib/protocol/crypto/build/Release/sshcrypto.node"))})
      const key = Buffer.alloc(16, 1), iv = Buffer.alloc(12, 2), chachaKey = Buffer.alloc(64, 3)
      let sink = 0
      for (let round = 0; round < 100; round++) {
        for (let i = 0; i < 50; i++) {
          new AESGCMCipher("aes-128-gcm", key, iv)
          new AESGCMDecipher("aes-128-gcm", key, iv)
          new ChaChaPolyCipher(chachaKey)
        }
        // Short-lived objects from optimized code: the scavenges that free the ciphers start here.
        for (let i = 0; i < 100000; i++) { const o = { a: i, b: [i] }; sink += o.b.length }
      }
      process.stdout.write("survived " + sink)
    `
    const child = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 60_000 })
    assert.strictEqual(child.signal, null, `the child died: ${child.stderr.slice(0, 400)}`)
    assert.strictEqual(child.status, 0, child.stderr.slice(0, 400))
    assert.match(child.stdout, /^survived \d+$/)
  })
})
