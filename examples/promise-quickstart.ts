import { Server } from "portcullis/promise"

const server = new Server({
  sftp: { address: "127.0.0.1:2022", hostKeyFiles: ["var/host_ed25519"] },
  users: [{ username: "alice", password: "change me", root: "/srv/alice" }]
})

const { sftp } = await server.listen()
console.log(`SFTP listening on port ${sftp?.port}`)

process.once("SIGTERM", () => void server.shutdown({ timeoutMs: 30_000 }))

for await (const upload of server.completedUploads()) {
  console.log(`${upload.username} uploaded ${upload.fullPath} (${upload.size} bytes)`)
}
