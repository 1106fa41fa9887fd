package qemu

import (
	"context"
	"fmt"
	"strconv"
)

// AttachDisk hot-plugs d into the running machine over QMP as the disk with index i:
// blockdev-add for the image, then device_add of the same device the command line
// would give it (virtio-blk-pci on the PCI root bus, which the pc machine's ACPI
// hot-plug announces to the guest; or scsi-hd on the controller Config.HotplugSCSI
// added), with the same serial and rotation rate. The guest sees it as soon as its
// kernel has handled the hot-plug event; waiting for that is the caller's.
func (m *Machine) AttachDisk(ctx context.Context, i int, d Disk) error {
	if err := regularFile(d.Path); err != nil {
		return fmt.Errorf("hot-plugging disk %s: %w", d.Path, err)
	}
	format := d.Format
	if format == "" {
		format = "raw"
	}
	node, id := "hpdisk"+strconv.Itoa(i), "hpdev"+strconv.Itoa(i)
	if err := m.QMP(ctx, "blockdev-add", map[string]any{
		"driver": format, "node-name": node, "read-only": d.ReadOnly,
		"file": map[string]any{"driver": "file", "filename": d.Path, "read-only": d.ReadOnly},
	}); err != nil {
		return fmt.Errorf("hot-plugging disk %s: %w", d.Path, err)
	}
	dev := map[string]any{"driver": "virtio-blk-pci", "id": id, "drive": node}
	if d.Bus == "scsi-hd" {
		dev["driver"], dev["bus"] = "scsi-hd", scsiController+".0"
		if d.RotationRate > 0 {
			dev["rotation_rate"] = d.RotationRate
		}
	}
	if d.Serial != "" {
		dev["serial"] = d.Serial
	}
	if err := m.QMP(ctx, "device_add", dev); err != nil {
		return fmt.Errorf("hot-plugging disk %s as %s: %w", d.Path, dev["driver"], err)
	}
	return nil
}
