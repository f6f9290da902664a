/**
 * The protocols one Portcullis server speaks. Events and sessions carry one.
 */

/**
 * A file-transfer protocol.
 * @category models
 */
export type Protocol = "sftp" | "ftp"
