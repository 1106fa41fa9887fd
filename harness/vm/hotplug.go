package vm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bootlab/bootlab/harness/qemu"
)

// AttachDisks hot-plugs the disks a HotplugDisks VM prepared, in the order of
// Spec.Disks, and returns the names the guest gave them. Each disk is attached only
// once the one before it is in the guest's /sys/block, so the guest names them in the
// order a boot would (vda, vdb, ... and sda, sdb, ...); then udev is let settle, so
// its rules (by-id links, RAID members assembled) have run on them as on a boot's
// disks before anything reads the disks. Needs the root shell (Login, or an adopted
// one after a restore). A VM with nothing pending returns nil.
func (v *VM) AttachDisks(ctx context.Context) ([]string, error) {
	pending := v.pending
	if len(pending) == 0 {
		return nil, nil
	}
	if v.sh == nil {
		return nil, errors.New("attaching disks: no shell to see them from (Login first)")
	}
	seen, err := v.guestDisks(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for i, d := range pending {
		if err := v.machine.AttachDisk(ctx, i, d); err != nil {
			return names, err
		}
		name, err := v.waitNewDisk(ctx, seen, d)
		if err != nil {
			return names, err
		}
		v.log.Info("vm.disk_attached", "path", d.Path, "bus", busOf(d), "guest", name)
		seen = append(seen, name)
		names = append(names, name)
	}
	v.pending = nil
	if _, err := v.Run(ctx, "udevadm settle --timeout=120"); err != nil {
		return names, fmt.Errorf("letting udev settle after attaching the disks: %w", err)
	}
	v.mark("disks_attached")
	return names, nil
}

// PendingDisks are the disks a HotplugDisks VM has prepared and not attached yet.
func (v *VM) PendingDisks() []qemu.Disk { return slices.Clone(v.pending) }

func busOf(d qemu.Disk) string {
	if d.Bus == "" {
		return "virtio"
	}
	return d.Bus
}

// guestDisks lists the guest's virtio and SCSI disks (vdX, sdX) in /sys/block.
func (v *VM) guestDisks(ctx context.Context) ([]string, error) {
	r, err := v.Run(ctx, "ls /sys/block")
	if err != nil {
		return nil, fmt.Errorf("listing the guest's disks: %w", err)
	}
	var out []string
	for _, n := range strings.Fields(string(r.Output)) {
		if strings.HasPrefix(n, "vd") || strings.HasPrefix(n, "sd") {
			out = append(out, n)
		}
	}
	return out, nil
}

// waitNewDisk waits, for at most a step's timeout, until the guest has a disk of d's
// kind (vdX for virtio, sdX for scsi-hd) that is not in seen.
func (v *VM) waitNewDisk(ctx context.Context, seen []string, d qemu.Disk) (string, error) {
	prefix := "vd"
	if d.Bus == "scsi-hd" {
		prefix = "sd"
	}
	ctx, cancel := context.WithTimeout(ctx, v.spec.Timeouts.Step)
	defer cancel()
	for {
		now, err := v.guestDisks(ctx)
		if err != nil {
			return "", fmt.Errorf("waiting for hot-plugged disk %s in the guest: %w", d.Path, err)
		}
		for _, n := range now {
			if strings.HasPrefix(n, prefix) && !slices.Contains(seen, n) {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("hot-plugged disk %s (%s) did not appear in the guest's /sys/block (it has %v): %w", d.Path, busOf(d), now, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
