/**
 * Environment overrides for containers: `PORTCULLIS_SFTP_ADDRESS=0.0.0.0:2022`
 * and friends replace one field of the config before it is validated, so a bad
 * value is reported like a bad field of the file. An override of a field of a
 * protocol section turns that protocol on. Only scalar fields can be overridden;
 * users and key lists stay in the file.
 */

/**
 * Every supported variable and the config path it sets. Booleans accept
 * "true"/"false", counts are decimal digits; everything else is taken as a string.
 * @category models
 */
export const environmentOverrides = {
  PORTCULLIS_SFTP_ADDRESS: ["sftp", "address"],
  PORTCULLIS_SFTP_HANDSHAKE_TIMEOUT: ["sftp", "handshakeTimeout"],
  PORTCULLIS_FTP_ADDRESS: ["ftp", "address"],
  PORTCULLIS_FTP_PASSIVE_PORTS: ["ftp", "passivePorts"],
  PORTCULLIS_FTP_PASSIVE_ADDRESS: ["ftp", "passiveAddress"],
  PORTCULLIS_FTP_IMPLICIT_TLS_ADDRESS: ["ftp", "implicitTLSAddress"],
  PORTCULLIS_FTP_DATA_ACCEPT_TIMEOUT: ["ftp", "dataAcceptTimeout"],
  PORTCULLIS_FTP_ALLOW_ACTIVE_MODE: ["ftp", "allowActiveMode"],
  PORTCULLIS_FTP_REQUIRE_TLS: ["ftp", "requireTLS"],
  PORTCULLIS_FTP_REQUIRE_SESSION_REUSE: ["ftp", "requireSessionReuse"],
  PORTCULLIS_ALLOW_CHOWN: ["allowChown"],
  PORTCULLIS_ALLOW_CHTIMES: ["allowChtimes"],
  PORTCULLIS_IDLE_TIMEOUT: ["idleTimeout"],
  PORTCULLIS_SHUTDOWN_TIMEOUT: ["shutdownTimeout"],
  PORTCULLIS_MAX_PRE_AUTH_CONNECTIONS: ["maxPreAuthConnections"],
  PORTCULLIS_MAX_PRE_AUTH_CONNECTIONS_PER_IP: ["maxPreAuthConnectionsPerIp"],
  PORTCULLIS_BANS_MAX_FAILURES: ["bans", "maxFailures"],
  PORTCULLIS_BANS_WINDOW: ["bans", "window"],
  PORTCULLIS_BANS_DURATION: ["bans", "duration"]
} as const satisfies Record<string, ReadonlyArray<string>>

const booleanFields = new Set(["allowActiveMode", "requireTLS", "requireSessionReuse", "allowChown", "allowChtimes"])

const countFields = new Set(["maxPreAuthConnections", "maxPreAuthConnectionsPerIp", "maxFailures"])

// Anything else is left a string, for the schema to report against the field.
const valueOf = (field: string, raw: string): unknown => {
  if (booleanFields.has(field) && (raw === "true" || raw === "false")) return raw === "true"
  if (countFields.has(field) && /^\d{1,9}$/.test(raw)) return Number(raw)
  return raw
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * `input` with every override present in `env` applied (a new object; `input` is not changed).
 * @category constructors
 */
export const applyEnvironment = (input: unknown, env: Readonly<Record<string, string | undefined>>): unknown => {
  if (!isRecord(input)) return input
  const result: Record<string, unknown> = { ...input }
  for (const [variable, fieldPath] of Object.entries(environmentOverrides)) {
    const raw = env[variable]
    if (raw === undefined) continue
    const path: ReadonlyArray<string> = fieldPath
    const field = path[path.length - 1]!
    if (path.length === 1) {
      result[field] = valueOf(field, raw)
      continue
    }
    const section = path[0]!
    result[section] = { ...(isRecord(result[section]) ? result[section] : {}), [field]: valueOf(field, raw) }
  }
  return result
}
