/**
 * Listening addresses as the config writes them: "host:port", "[v6]:port";
 * port 0 binds a free port.
 */

/**
 * A host and port to listen on.
 * @category models
 */
export interface Address {
  readonly host: string
  readonly port: number
}

/**
 * Parses "127.0.0.1:2022", "[::1]:2022" or "localhost:0"; undefined when malformed.
 * @category constructors
 */
export const parseAddress = (input: string): Address | undefined => {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(input)
  if (!match) return undefined
  const port = Number(match[3])
  if (port > 65535) return undefined
  return { host: match[1] ?? match[2]!, port }
}

/**
 * Formats an address the way the `listening` log line shows it.
 * @category constructors
 */
export const formatAddress = ({ host, port }: Address): string => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)
