package status

import (
	"fmt"
	"strings"
)

// Notice is the login message (`pre-nixos notice`) for the given status files
// (either may be nil): what happened to storage and the LAN address.
func Notice(storage, network Status, version string) string {
	var b strings.Builder
	if version != "" {
		b.WriteString("pre-nixos boot image version " + version + "\n")
	}
	const journal = "See 'journalctl -u pre-nixos' for details.\n"
	state, detail := storage.State(), storage.Detail()
	switch {
	case state == "":
	case state == StateInProgress:
		b.WriteString("pre-nixos: Storage provisioning is in progress (or was interrupted).\n" + journal)
	case state == StateApplied && detail == DetailManualApply:
		b.WriteString("pre-nixos: Storage provisioning completed (applied manually).\n")
	case state == StateApplied && detail == DetailForceCleanup:
		b.WriteString("pre-nixos: Existing storage was erased (forced) and provisioning completed.\n")
	case state == StateApplied:
		b.WriteString("pre-nixos: Storage provisioning completed automatically.\n")
	case state == StatePlanOnly && detail == DetailExistingStorage:
		b.WriteString("pre-nixos: Existing storage detected; provisioning ran in plan-only mode.\n")
		b.WriteString("Review the plan with 'pre-nixos --plan-only'; apply it with 'PRE_NIXOS_FORCE_CLEANUP=1 pre-nixos' (erases the disks).\n")
	case state == StatePlanOnly && detail == DetailDetectionError:
		b.WriteString("pre-nixos: Storage detection failed; provisioning ran in plan-only mode.\n" + journal)
	case state == StatePlanOnly:
		b.WriteString("pre-nixos: Provisioning ran in plan-only mode. Review before applying.\n")
	case state == StateFailed:
		switch detail {
		case DetailExistingStorage, DetailForceCleanup:
			b.WriteString("pre-nixos: Provisioning failed while handling existing storage.\n")
		case DetailDetectionError:
			b.WriteString("pre-nixos: Provisioning failed after storage detection failed.\n")
		case DetailInventoryError:
			b.WriteString("pre-nixos: The disk inventory could not be read; nothing was applied.\n")
		default:
			b.WriteString("pre-nixos: Provisioning failed.\n")
		}
		if e := storage[KeyError]; e != "" {
			b.WriteString("Error: " + e + "\n")
		}
		b.WriteString(journal)
	default:
		fmt.Fprintf(&b, "pre-nixos: Provisioning status is '%s' (%s).\n", state, detail)
	}
	if ip := network.LANIPv4(); ip != "" {
		b.WriteString("LAN IPv4 address: " + ip + "\n")
	}
	return b.String()
}
