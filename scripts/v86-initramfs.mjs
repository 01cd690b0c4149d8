// Builds the initramfs for the v86 Linux guest (issue #8): an uncompressed cpio archive in the
// "newc" format the kernel unpacks (see the kernel's Documentation/driver-api/early-userspace/
// buffer-format.rst). Each entry is a 110-byte ASCII header ("070701" and 13 fields of 8 hex digits),
// the NUL-terminated name padded to a multiple of 4 bytes (header included), then the data padded
// to a multiple of 4. The archive ends with an entry named TRAILER!!!.
//
// The kernel creates entries in order and does not create missing parents, so directories come
// first. Uncompressed boots faster in v86 than gzip (no decompression in the emulated CPU).

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;

const encoder = new TextEncoder();

/**
 * Serializes entries into a newc cpio archive.
 * @param {{ name: string, mode: number, data?: Uint8Array, rdev?: [number, number] }[]} entries
 *   names without a leading slash; `mode` includes the file type bits
 * @returns {Uint8Array}
 */
export function writeCpio(entries) {
  const chunks = [];
  let size = 0;
  const push = (bytes) => {
    chunks.push(bytes);
    size += bytes.length;
    const pad = (4 - (size % 4)) % 4;
    if (pad) {
      chunks.push(new Uint8Array(pad));
      size += pad;
    }
  };
  const hex = (n) => {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio field out of range: ${n}`);
    return n.toString(16).padStart(8, '0');
  };
  const entry = (ino, { name, mode, data = new Uint8Array(0), rdev = [0, 0] }) => {
    const nameBytes = encoder.encode(`${name}\0`);
    const isDir = (mode & 0o170000) === S_IFDIR;
    const fields = [
      ino,
      mode,
      0 /* uid */,
      0 /* gid */,
      isDir ? 2 : 1 /* nlink */,
      0 /* mtime */,
      data.length,
      0,
      0 /* devmajor, devminor */,
      rdev[0],
      rdev[1],
      nameBytes.length,
      0 /* check */,
    ];
    const header = encoder.encode(`070701${fields.map(hex).join('')}`);
    const headAndName = new Uint8Array(header.length + nameBytes.length);
    headAndName.set(header);
    headAndName.set(nameBytes, header.length);
    push(headAndName);
    if (data.length) push(data);
  };
  entries.forEach((e, i) => {
    if (!e.name || e.name.startsWith('/') || e.name === 'TRAILER!!!') throw new Error(`bad cpio name: ${e.name}`);
    entry(i + 1, e);
  });
  entry(0, { name: 'TRAILER!!!', mode: 0 });
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/**
 * The guest's initramfs: /init (the given script), /bin/busybox, /dev/console and the kernel
 * modules under /lib/modules/NAME.
 * @param {{ busybox: Uint8Array, modules?: { name: string, bytes: Uint8Array }[], init: string }} options
 * @returns {Uint8Array} an uncompressed newc cpio archive
 */
export function buildInitramfs({ busybox, modules = [], init }) {
  if (!(busybox instanceof Uint8Array) || busybox.length === 0)
    throw new TypeError('busybox: non-empty Uint8Array expected');
  if (typeof init !== 'string' || !init.startsWith('#!'))
    throw new TypeError('init: a script starting with #! expected');
  const dirs = ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'lib', 'lib/modules'];
  const entries = [
    ...dirs.map((name) => ({ name, mode: S_IFDIR | 0o755 })),
    { name: 'init', mode: S_IFREG | 0o755, data: encoder.encode(init) },
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: busybox },
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdev: [5, 1] },
  ];
  for (const { name, bytes } of modules) {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`bad module name: ${name}`);
    entries.push({ name: `lib/modules/${name}`, mode: S_IFREG | 0o644, data: bytes });
  }
  return writeCpio(entries);
}

/**
 * The default /init: busybox applets as symlinks, proc/sys/devtmpfs mounted, the uio modules
 * loaded, then `extra` (shell commands), then an interactive shell on the console (ttyS0).
 * @param {string} [extra]
 */
export function defaultInit(extra = '') {
  return [
    '#!/bin/busybox sh',
    '/bin/busybox --install -s',
    'export PATH=/bin:/sbin:/usr/bin:/usr/sbin',
    'mount -t proc proc /proc',
    'mount -t sysfs sysfs /sys',
    'mount -t devtmpfs devtmpfs /dev',
    'insmod /lib/modules/uio.ko',
    'insmod /lib/modules/uio_pci_generic.ko',
    extra,
    'exec setsid cttyhack sh',
    '',
  ].join('\n');
}
