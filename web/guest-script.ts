// The shell driver a v86 Linux guest runs in the browser demo: busybox sh, devmem and the
// kernel's uio_pci_generic, nothing compiled. It blocks in read(/dev/uio0) until the device's
// INTx fires, clears IntrStatus, re-enables INTx, then looks at the pair mailbox of every peer
// that may write to it (src/demo/mailbox.ts), checks a new message (sequence, ids, checksum),
// acknowledges it and rings the sender's vector 1, as a JavaScript peer does. One line per message
// tells the worker what the guest saw: RX <from> <seq> <number> <ok|bad> <interrupts so far>.
import { DOORBELL_PEER_SHIFT, REG_DOORBELL, REG_INTRMASK, REG_INTRSTATUS, REG_IVPOSITION } from '../src/core/abi.js';
import { MAILBOX_BYTES, PAIR_MAILBOX_PEERS, VECTOR_ACK } from '../src/demo/mailbox.js';
import { PCI_COMMAND } from '../src/device/pci/registers.js';

/** Printed once the guest waits for its first interrupt. */
export const ARMED_MARKER = 'ARMED-44';

export interface GuestDriverOptions {
  /** Where the VMM put BAR0 and BAR2 (V86Transport's fixed addresses). */
  bar0: number;
  bar2: number;
}

/** Where /init installs the driver; run it as `ivshmem-rx PEER... &`. */
export const DRIVER_PATH = '/bin/ivshmem-rx';

const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * The driver, a shell script taking the ids of the peers that may write to us. It reads its own
 * id from IVPosition and prints ARMED_MARKER once it waits for its first interrupt.
 */
export function guestDriver({ bar0, bar2 }: GuestDriverOptions): string {
  // The checksum of src/demo/mailbox.ts in 64-bit shell arithmetic (Math.imul is the low 32 bits).
  const sum = '(((s^0x9e3779b9)*31) ^ ((p+1)*0x85ebca6b) ^ ME ^ (m*7)) & 0xffffffff';
  const box = `B2+(ME*${PAIR_MAILBOX_PEERS}+p)*${MAILBOX_BYTES}`;
  // Byte 1 of the command register: writing it clears INTx Disable, which uio set on the interrupt.
  const intxOn = `printf '\\001' | dd of=/sys/class/uio/uio0/device/config bs=1 seek=${PCI_COMMAND + 1} count=1 conv=notrunc 2>/dev/null`;
  return [
    '#!/bin/busybox sh',
    `B0=$((${hex(bar0)})); B2=$((${hex(bar2)}))`,
    `ME=$(($(devmem $((B0+${REG_IVPOSITION})) 32)))`,
    'exec 3</dev/uio0',
    `devmem $((B0+${REG_INTRMASK})) 32 0xffffffff`,
    'for p in "$@"; do eval L$p=0; done',
    `echo ${ARMED_MARKER.replace('44', '$((40+4))')}`,
    'while :; do',
    '  n=$(dd bs=4 count=1 <&3 2>/dev/null | od -An -tu4)',
    `  devmem $((B0+${REG_INTRSTATUS})) 32 >/dev/null`,
    `  ${intxOn}`,
    '  for p in "$@"; do',
    `    at=$((${box})); s=$(($(devmem $at 32))); eval l=\\$L$p`,
    '    [ $s -eq $l ] && continue',
    '    eval L$p=$s',
    '    f=$(($(devmem $((at+4)) 32))); t=$(($(devmem $((at+8)) 32)))',
    '    m=$(($(devmem $((at+12)) 32))); c=$(($(devmem $((at+16)) 32)))',
    `    ok=bad; [ $s -eq $((l+1)) ] && [ $f -eq $p ] && [ $t -eq $ME ] && [ $c -eq $((${sum})) ] && ok=ok`,
    '    devmem $((at+20)) 32 $s',
    `    devmem $((B0+${REG_DOORBELL})) 32 $(((p<<${DOORBELL_PEER_SHIFT})|${VECTOR_ACK}))`,
    '    echo "RX $p $s $m $ok $((n))"',
    '  done',
    'done',
    '',
  ].join('\n');
}

/** /init lines: install the driver, and hand the ivshmem function to uio_pci_generic (/dev/uio0). */
export function installDriver(options: GuestDriverOptions): string {
  return [
    `cat > ${DRIVER_PATH} <<'END-OF-DRIVER'`,
    guestDriver(options) + 'END-OF-DRIVER',
    `chmod +x ${DRIVER_PATH}`,
    "echo '1af4 1110' > /sys/bus/pci/drivers/uio_pci_generic/new_id",
  ].join('\n');
}

/** What the worker types once it knows who may write to the guest. */
export function startDriver(me: number, peers: number[]): string {
  return `${DRIVER_PATH} ${peers.filter((p) => p !== me && p < PAIR_MAILBOX_PEERS).join(' ')} &`;
}

export interface GuestReceipt {
  from: number;
  seq: number;
  number: number;
  intact: boolean;
  /** The guest kernel's count of the device's interrupts when it woke for this message. */
  interrupts: number;
}

/** The receipts in a piece of console output (whole lines only). */
export function parseReceipts(text: string): GuestReceipt[] {
  const out: GuestReceipt[] = [];
  for (const m of text.matchAll(/^RX (\d+) (\d+) (\d+) (ok|bad) (\d+)\r?$/gm)) {
    out.push({ from: +m[1], seq: +m[2], number: +m[3], intact: m[4] === 'ok', interrupts: +m[5] });
  }
  return out;
}
