import { NodeRuntime } from "@effect/platform-node"
import { Effect, Stream } from "effect"
import { decodeConfig, Events, Server, UserRegistry } from "portcullis"

const program = Effect.gen(function*() {
  const config = yield* decodeConfig({
    sftp: { address: "127.0.0.1:2022", hostKeyFiles: ["var/host_ed25519"] },
    users: [{ username: "alice", password: "change me", root: "/srv/alice" }]
  })
  yield* Effect.gen(function*() {
    // Users can change while the server runs.
    const users = yield* UserRegistry
    yield* users.addUser({ username: "bob", root: "/srv/bob", canRead: true, canWrite: true, password: "s3cret!" })
    // Every completed upload, until the server stops.
    const events = yield* Events
    yield* Stream.runForEach(events.uploads, (upload) => Effect.log(`${upload.username} uploaded ${upload.fullPath}`))
  }).pipe(Effect.provide(Server.layer(config)))
})

NodeRuntime.runMain(program)
