/**
 * Binding a protocol's TCP listener, shared by SFTP and FTP.
 */
import { Data, Effect } from "effect"
import type * as net from "node:net"
import { type Address, formatAddress } from "../../config/Address.js"

/**
 * The listener could not bind its address.
 * @category errors
 */
export class ListenError extends Data.TaggedError("ListenError")<{
  readonly protocol: "sftp" | "ftp"
  readonly address: string
  readonly code: string
}> {
  override get message(): string {
    return `cannot listen on ${this.address} (${this.protocol}): ${this.code}`
  }
}

/**
 * Binds `server` to `address`; the result is the bound address (the real port for port 0).
 * @category constructors
 */
export const listen = (protocol: ListenError["protocol"], server: net.Server, address: Address) =>
  Effect.callback<Address, ListenError>((resume) => {
    const onError = (error: NodeJS.ErrnoException) =>
      resume(Effect.fail(new ListenError({ protocol, address: formatAddress(address), code: error.code ?? "EUNKNOWN" })))
    server.once("error", onError)
    server.listen(address.port, address.host, () => {
      server.off("error", onError)
      const bound = server.address()
      resume(Effect.succeed(typeof bound === "object" && bound ? { host: address.host, port: bound.port } : address))
    })
  })
