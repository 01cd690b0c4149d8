// Offsets and bits of the PCI 3.0 type-0 configuration header and the MSI-X capability that the
// ivshmem function uses.

export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_BASE_ADDRESS_2 = 0x18;
export const PCI_BASE_ADDRESS_3 = 0x1c;
/** Just past the six BAR registers. */
export const PCI_CARDBUS_CIS = 0x28;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
export const PCI_CONFIG_HEADER_SIZE = 0x40;
export const PCI_CONFIG_SPACE_SIZE = 0x100;

export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_SERR = 0x100;
export const PCI_COMMAND_INTX_DISABLE = 0x400;

export const PCI_STATUS_INTERRUPT = 0x08;
export const PCI_STATUS_CAP_LIST = 0x10;
/** Error bits a guest clears by writing 1 (the device never sets them, but the mask is real). */
export const PCI_STATUS_W1C = 0xf900;

export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;

export const PCI_CAP_ID_MSIX = 0x11;
export const PCI_MSIX_FLAGS = 2; // Message Control, relative to the capability
export const PCI_MSIX_TABLE = 4;
export const PCI_MSIX_PBA = 8;
export const PCI_MSIX_CAP_SIZE = 12;
export const PCI_MSIX_FLAGS_ENABLE = 0x8000;
export const PCI_MSIX_FLAGS_MASKALL = 0x4000;
export const PCI_MSIX_FLAGS_QSIZE = 0x07ff;

/** Red Hat / Qumranet ids used by QEMU for ivshmem. */
export const IVSHMEM_VENDOR_ID = 0x1af4;
export const IVSHMEM_DEVICE_ID = 0x1110;
export const IVSHMEM_SUBSYSTEM_VENDOR_ID = 0x1af4;
export const IVSHMEM_SUBSYSTEM_ID = 0x1100;
export const PCI_CLASS_MEMORY_RAM = 0x0500;
