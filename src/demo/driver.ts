// The demo peers' guest driver steps, the same in a process (peer.ts) and in a browser's Web
// Worker (web/peer-worker.ts): what firmware and a driver do before the first doorbell.
import { MSIX_ENTRY_ADDR_LO, MSIX_ENTRY_CTRL, MSIX_ENTRY_DATA, MSIX_ENTRY_SIZE } from '../core/abi.js';
import { MSIX_CAP_OFFSET } from '../device/pci/ivshmem-function.js';
import {
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_MSIX_FLAGS,
  PCI_MSIX_FLAGS_ENABLE,
} from '../device/pci/registers.js';
import type { DeviceModel } from '../device/model.js';

/** Decodes memory, masters the bus, enables MSI-X and unmasks `vectors` entries, vector v sending data v. */
export function enableMsix(device: Pick<DeviceModel, 'configWrite' | 'mmioWrite'>, vectors: number): void {
  device.configWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  device.configWrite(MSIX_CAP_OFFSET + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
  for (let v = 0; v < vectors; v++) {
    const entry = v * MSIX_ENTRY_SIZE;
    device.mmioWrite(1, entry + MSIX_ENTRY_ADDR_LO, 4, 0xfee00000); // the x86 MSI window; the transport only records it
    device.mmioWrite(1, entry + MSIX_ENTRY_DATA, 4, v);
    device.mmioWrite(1, entry + MSIX_ENTRY_CTRL, 4, 0);
  }
}
