// The guest's side of the peer-state example: a busybox shell script, nothing compiled, that a
// Linux guest in v86 runs as its "driver". It finds the table through the device's registers,
// publishes its own state, and each time the device's INTx fires (the server or a peer rang the
// state vector) it prints every entry whose sequence moved, one line each:
//   PEER <slot> <id> <empty|present|gone> <state>
// Register offsets (BAR0) and the table's layout are docs/peer-state-table.md's.

/** Printed once the driver waits for its first interrupt. */
export const ARMED = 'STATE-ARMED';

/** The script, for /init to install as /bin/ivshmem-state (run it as `ivshmem-state STATE &`). */
export function stateDriver({ bar0, bar2 }) {
  const hex = (n) => `0x${n.toString(16)}`;
  // Byte 1 of the PCI command register: writing 0 there clears the INTx Disable bit that
  // uio_pci_generic sets when it takes an interrupt, so the next one can come.
  const intxOn =
    "printf '\\000' | dd of=/sys/class/uio/uio0/device/config bs=1 seek=5 count=1 conv=notrunc 2>/dev/null";
  return [
    '#!/bin/busybox sh',
    `B0=$((${hex(bar0)})); B2=$((${hex(bar2)}))`,
    'T=$(($(devmem $((B0+0x14)) 32)))', // StateTable: the table's offset in the shared memory
    'ME=$(($(devmem $((B0+0x18)) 32)))', // StateSlot: our entry
    'N=$(($(devmem $((B2+T+8)) 32)))', // the header's slot count
    'echo "TABLE magic $(devmem $((B2+T)) 32) at $T, $N slots, ours $ME"',
    'devmem $((B0+0x10)) 32 $1', // State: publish ours
    'exec 3</dev/uio0',
    'devmem $B0 32 0xffffffff', // IntrMask: let vector 0 raise INTx
    's=0; while [ $s -lt $N ]; do eval Q$s=0; s=$((s+1)); done',
    'scan() {',
    '  s=0',
    '  while [ $s -lt $N ]; do',
    '    e=$((B2+T+64+32*s)); q=$(($(devmem $((e+12)) 32))); eval p=\\$Q$s',
    '    if [ $q -ne $p ]; then',
    '      eval Q$s=$q',
    '      case $(($(devmem $((e+4)) 32))) in 0) w=empty;; 1) w=present;; *) w=gone;; esac',
    '      echo "PEER $s $(($(devmem $e 32))) $w $(devmem $((e+8)) 32)"',
    '    fi',
    '    s=$((s+1))',
    '  done',
    '}',
    'scan',
    `echo ${ARMED}`,
    'while :; do',
    '  dd bs=4 count=1 <&3 >/dev/null 2>&1',
    '  devmem $((B0+4)) 32 >/dev/null', // IntrStatus: reading clears it
    `  ${intxOn}`,
    '  scan',
    'done',
    '',
  ].join('\n');
}

/** /init lines: install the driver and hand the ivshmem function to uio_pci_generic (/dev/uio0). */
export function installStateDriver(bars) {
  return [
    "cat > /bin/ivshmem-state <<'END-OF-DRIVER'",
    stateDriver(bars) + 'END-OF-DRIVER',
    'chmod +x /bin/ivshmem-state',
    "echo '1af4 1110' > /sys/bus/pci/drivers/uio_pci_generic/new_id",
  ].join('\n');
}
