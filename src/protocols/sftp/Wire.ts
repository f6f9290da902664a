/**
 * SFTP version 3 wire constants (draft-ietf-secsh-filexfer-02) and the OpenSSH
 * extensions Portcullis understands (OpenSSH PROTOCOL, section 4).
 *
 * Use these instead of bare numbers wherever a packet is built or inspected.
 * Every group is an `as const` object plus a type of its values, so a `switch`
 * over a packet type or status code is checked by the compiler.
 */

/**
 * The only protocol version spoken. Clients asking for more get version 3 (filexfer-02 section 4).
 * @category models
 */
export const protocolVersion = 3

/**
 * Default cap on a packet's length field (the bytes after the uint32 length), as
 * OpenSSH's sftp-server (SFTP_MAX_MSG_LENGTH, 256 KiB).
 * @category models
 */
export const defaultMaxPacketLength = 262144

/**
 * Longest handle a client may send, in bytes (filexfer-02 section 3: "handles MUST NOT be longer than 256 bytes").
 * @category models
 */
export const maxHandleBytes = 256

/**
 * Packet types, SSH_FXP_* (filexfer-02 section 3). Types 1 and 3-20 and 200 travel client to server.
 * @category models
 */
export const SftpPacket = {
  Init: 1,
  Version: 2,
  Open: 3,
  Close: 4,
  Read: 5,
  Write: 6,
  Lstat: 7,
  Fstat: 8,
  Setstat: 9,
  Fsetstat: 10,
  Opendir: 11,
  Readdir: 12,
  Remove: 13,
  Mkdir: 14,
  Rmdir: 15,
  Realpath: 16,
  Stat: 17,
  Rename: 18,
  Readlink: 19,
  Symlink: 20,
  Status: 101,
  Handle: 102,
  Data: 103,
  Name: 104,
  Attrs: 105,
  Extended: 200,
  ExtendedReply: 201
} as const

/**
 * One of the {@link SftpPacket} values.
 * @category models
 */
export type SftpPacket = (typeof SftpPacket)[keyof typeof SftpPacket]

/**
 * Status codes, SSH_FX_* (filexfer-02 section 7). Version 3 defines nothing above 8.
 * @category models
 */
export const SftpStatus = {
  Ok: 0,
  Eof: 1,
  NoSuchFile: 2,
  PermissionDenied: 3,
  Failure: 4,
  BadMessage: 5,
  NoConnection: 6,
  ConnectionLost: 7,
  OpUnsupported: 8
} as const

/**
 * One of the {@link SftpStatus} values.
 * @category models
 */
export type SftpStatus = (typeof SftpStatus)[keyof typeof SftpStatus]

/**
 * SSH_FXP_OPEN pflags, SSH_FXF_* (filexfer-02 section 6.3): READ, WRITE, APPEND, CREAT, TRUNC, EXCL.
 * @category models
 */
export const SftpOpenFlag = {
  Read: 0x01,
  Write: 0x02,
  Append: 0x04,
  Create: 0x08,
  Truncate: 0x10,
  Exclusive: 0x20
} as const

/**
 * One of the {@link SftpOpenFlag} bits.
 * @category models
 */
export type SftpOpenFlag = (typeof SftpOpenFlag)[keyof typeof SftpOpenFlag]

/**
 * ATTRS flags, SSH_FILEXFER_ATTR_* (filexfer-02 section 5): which optional fields follow.
 * @category models
 */
export const SftpAttrFlag = {
  Size: 0x00000001,
  UidGid: 0x00000002,
  Permissions: 0x00000004,
  AcModTime: 0x00000008,
  Extended: 0x80000000
} as const

/**
 * One of the {@link SftpAttrFlag} bits.
 * @category models
 */
export type SftpAttrFlag = (typeof SftpAttrFlag)[keyof typeof SftpAttrFlag]

/**
 * File type bits of the `permissions` attribute. Version 3 carries the whole
 * POSIX st_mode there, so clients such as OpenSSH read the type from these bits.
 * @category models
 */
export const SftpFileType = {
  Mask: 0o170000,
  Socket: 0o140000,
  Symlink: 0o120000,
  Regular: 0o100000,
  Block: 0o060000,
  Directory: 0o040000,
  Character: 0o020000,
  Fifo: 0o010000
} as const

/**
 * One of the {@link SftpFileType} values (other than `Mask`).
 * @category models
 */
export type SftpFileType = (typeof SftpFileType)[keyof typeof SftpFileType]

/**
 * Names of the SSH_FXP_EXTENDED requests the codec decodes (OpenSSH PROTOCOL 4.3-4.11).
 * @category models
 */
export const SftpExtension = {
  PosixRename: "posix-rename@openssh.com",
  Statvfs: "statvfs@openssh.com",
  Fstatvfs: "fstatvfs@openssh.com",
  Hardlink: "hardlink@openssh.com",
  Fsync: "fsync@openssh.com",
  Lsetstat: "lsetstat@openssh.com",
  Limits: "limits@openssh.com",
  ExpandPath: "expand-path@openssh.com",
  CopyData: "copy-data",
  HomeDirectory: "home-directory"
} as const

/**
 * One of the {@link SftpExtension} names.
 * @category models
 */
export type SftpExtension = (typeof SftpExtension)[keyof typeof SftpExtension]

/**
 * Bits of `flag` in a statvfs@openssh.com reply, SSH_FXE_STATVFS_ST_* (OpenSSH PROTOCOL 4.4).
 * @category models
 */
export const SftpStatvfsFlag = {
  ReadOnly: 0x1,
  NoSuid: 0x2
} as const

/**
 * One of the {@link SftpStatvfsFlag} bits.
 * @category models
 */
export type SftpStatvfsFlag = (typeof SftpStatvfsFlag)[keyof typeof SftpStatvfsFlag]
