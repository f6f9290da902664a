/**
 * The fd under a plain TCP socket that nobody has read from yet, for native
 * code that reads the socket itself (FileHandle.receiveFrom).
 *
 * Node has no public accessor for a socket's fd; its TCP handle (`_handle`)
 * exposes `fd` and whether libuv is reading (`reading`). Both are read here
 * defensively: when either is missing, or when the socket is TLS, destroyed,
 * already reading or holding buffered bytes, there is no fd to hand out and
 * the caller reads through Node as usual. Handing out a socket that Node
 * reads too would split the stream between two readers.
 */
import * as tls from "node:tls"
import type * as net from "node:net"

/**
 * The socket's fd, or undefined when native code must not read it (see above).
 * @category constructors
 */
export const unreadDescriptor = (socket: net.Socket): number | undefined => {
  if (socket instanceof tls.TLSSocket || socket.destroyed || socket.readableLength > 0 || socket.readableEnded) {
    return undefined
  }
  const handle: unknown = Reflect.get(socket, "_handle")
  if (typeof handle !== "object" || handle === null) return undefined
  const fd: unknown = Reflect.get(handle, "fd")
  const reading: unknown = Reflect.get(handle, "reading")
  return typeof fd === "number" && Number.isInteger(fd) && fd >= 0 && reading !== true ? fd : undefined
}
