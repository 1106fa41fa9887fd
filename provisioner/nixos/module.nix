# NixOS module for the pre-nixos boot image: the options and units of the
# Python pre-nixos's module, with its bash service script replaced by
# `pre-nixos boot` (docs/nix.md says what it sets up and why).
#
# The invariants the harness relies on are asserted by harness/ci/module_test.go;
# change them there too, deliberately.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.pre-nixos;

  stateDir = "/run/pre-nixos";
  # Fixed path compiled into pre-nixos as the PRE_NIXOS_ROOT_KEY_FILE default;
  # the variable is set anyway so the service never depends on that default.
  rootKeyPath = "/etc/pre-nixos/root_key.pub";

  hasRootKey = cfg.rootKey != null && cfg.rootKey != "";

  # One environment for the service and for interactive shells, so running
  # `pre-nixos` by hand behaves exactly like the boot run.
  preNixosEnv = {
    PRE_NIXOS_EXEC = "1";
    PRE_NIXOS_STATE_DIR = stateDir;
    PRE_NIXOS_ROOT_KEY_FILE = rootKeyPath;
    PRE_NIXOS_NIXPKGS = "${pkgs.path}";
    PRE_NIXOS_VERSION = cfg.package.version or "unknown";
    # Structured logs are on by default (docs/decisions.md); stated here so a
    # reader of the unit sees where actions.log comes from.
    PRE_NIXOS_LOG_EVENTS = "1";
  } // lib.optionalAttrs (cfg.autoInstall != "") {
    PRE_NIXOS_AUTO_INSTALL = cfg.autoInstall;
  };

  # disko evaluates its config with nix, so nix must be on the service PATH
  # and nixpkgs on NIX_PATH; the storage tools serve the native backend and
  # cleanup (sgdisk, mdadm, lvm, wipefs, mkfs.*, partprobe, blockdev).
  servicePath = [
    pkgs.coreutils
    pkgs.disko
    pkgs.dosfstools
    pkgs.e2fsprogs
    pkgs.ethtool
    pkgs.gptfdisk
    pkgs.iproute2
    pkgs.kmod
    pkgs.lvm2
    pkgs.mdadm
    pkgs.parted
    pkgs.systemd
    pkgs.util-linux
    config.nix.package
  ];

  # Login notice from the status files: they speak for themselves so
  # a person at the console knows what happened without reading the journal.
  loginNotice = ''
    if [ -n "''${PRE_NIXOS_VERSION:-}" ]; then
      echo "pre-nixos boot image version $PRE_NIXOS_VERSION"
    fi
    __pn_status="${stateDir}/storage-status"
    if [ -r "$__pn_status" ]; then
      __pn_state=$(sed -n 's/^STATE=//p' "$__pn_status" | tr -d '\r' | head -n1)
      __pn_detail=$(sed -n 's/^DETAIL=//p' "$__pn_status" | tr -d '\r' | head -n1)
      case "$__pn_state/$__pn_detail" in
        in-progress/*)
          echo "pre-nixos: Storage provisioning is in progress (or was interrupted)."
          echo "pre-nixos: See 'journalctl -u pre-nixos' for details." ;;
        applied/auto-applied)
          echo "pre-nixos: Storage provisioning completed automatically." ;;
        applied/manual-apply)
          echo "pre-nixos: Storage provisioning completed (applied manually)." ;;
        plan-only/existing-storage)
          echo "pre-nixos: Existing storage detected; provisioning ran in plan-only mode."
          echo "pre-nixos: Review the plan with 'pre-nixos --plan-only' and apply it with 'pre-nixos'." ;;
        plan-only/detection-error)
          echo "pre-nixos: Storage detection failed; provisioning ran in plan-only mode."
          echo "pre-nixos: See 'journalctl -u pre-nixos' for details." ;;
        plan-only/*)
          echo "pre-nixos: Provisioning ran in plan-only mode. Review before applying." ;;
        failed/existing-storage|failed/existing-storage-force-cleanup)
          echo "pre-nixos: Provisioning failed while handling existing storage."
          echo "pre-nixos: See 'journalctl -u pre-nixos' for details." ;;
        failed/inventory-error)
          echo "pre-nixos: The disk inventory could not be read; nothing was applied."
          echo "pre-nixos: See 'journalctl -u pre-nixos' for details." ;;
        failed/detection-error)
          echo "pre-nixos: Provisioning failed after a storage detection error."
          echo "pre-nixos: See 'journalctl -u pre-nixos' for details." ;;
        failed/*)
          echo "pre-nixos: Provisioning failed."
          echo "pre-nixos: See 'journalctl -u pre-nixos' for details." ;;
        /*) ;;
        *)
          echo "pre-nixos: Provisioning status is '$__pn_state' ($__pn_detail)." ;;
      esac
      unset __pn_state __pn_detail
    fi
    unset __pn_status
    if [ -r "${stateDir}/network-status" ]; then
      __pn_ip=$(sed -n 's/^LAN_IPV4=//p' "${stateDir}/network-status" | head -n1)
      [ -n "$__pn_ip" ] && echo "LAN IPv4 address: $__pn_ip"
      unset __pn_ip
    fi
  '';
in
{
  options.services.pre-nixos = {
    enable = lib.mkEnableOption "the pre-nixos storage and network provisioner at boot";

    package = lib.mkOption {
      type = lib.types.package;
      description = ''
        The pre-nixos package (pre-nixos, pre-nixos-detect-storage,
        pre-nixos-console). The flake's nixosModules.pre-nixos sets it to
        its own build; importing this file alone requires setting it.
      '';
    };

    rootKey = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "ssh-ed25519 AAAAC3Nza... admin@example";
      description = ''
        OpenSSH public key for root, installed at ${rootKeyPath}. pre-nixos
        copies it into /root/.ssh/authorized_keys when it hardens sshd.
        Without a key the image still boots; SSH as root is then impossible.
      '';
    };

    autoInstall = lib.mkOption {
      type = lib.types.str;
      default = "";
      description = ''
        Build-time value exported as PRE_NIXOS_AUTO_INSTALL when non-empty.
        Auto-install is out of scope for now (docs/decisions.md); kept so images
        built with a value keep saying so on /etc/issue.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [
      cfg.package
      pkgs.disko
      pkgs.util-linux
      pkgs.minicom
    ];

    environment.sessionVariables = preNixosEnv // {
      NIX_PATH = lib.mkForce "nixpkgs=${pkgs.path}";
    };

    environment.etc."pre-nixos/root_key.pub" = lib.mkIf hasRootKey {
      text = lib.removeSuffix "\n" cfg.rootKey + "\n";
      mode = "0444";
    };

    environment.interactiveShellInit = loginNotice;

    environment.etc.issue = lib.mkForce {
      text = ''
        Welcome to the pre-nixos boot image (NixOS ${config.system.nixos.label}) - \m \l

        Auto-install: ${if cfg.autoInstall != "" then "enabled" else "disabled; run pre-nixos to provision storage"} (${cfg.autoInstall})
        The "nixos" and "root" accounts have empty passwords on the console.
        ${if hasRootKey
          then "SSH: root logs in with the embedded key once pre-nixos has finished."
          else "SSH: no root key was embedded; SSH as root is unavailable."}
        Network: pre-nixos configures the LAN link with DHCP; see 'networkctl status'.
        Run 'nixos-help' for the NixOS manual.

      '';
    };

    # No DHCP anywhere until pre-nixos writes 20-lan.network for the LAN link.
    systemd.network.enable = true;
    networking.useNetworkd = lib.mkForce true;
    networking.useDHCP = lib.mkForce false;
    networking.networkmanager.enable = lib.mkForce false;

    # ttyS0 comes last so it becomes /dev/console: systemd status lines,
    # emergency shells and console broadcasts reach the serial line the
    # harness reads. The getty generator adds serial-getty@ttyS0 from it.
    boot.kernelParams = [ "console=tty0" "console=ttyS0,115200n8" ];

    # For GRUB-booted systems (installed targets). The ISO boots through
    # isolinux, whose config nixpkgs already starts with SERIAL 0 115200, and
    # through EFI GRUB, which enables serial when the firmware offers it.
    boot.loader.grub.extraConfig = ''
      serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1
      terminal_input serial console
      terminal_output serial console
    '';

    systemd.services.pre-nixos = {
      description = "pre-nixos storage and network provisioning";
      wantedBy = [ "multi-user.target" ];
      # Deliberately no network ordering: pre-nixos brings up the LAN itself
      # and waiting for network-online would hang a machine without a NIC.
      path = servicePath;
      environment = preNixosEnv // {
        NIX_PATH = "nixpkgs=${pkgs.path}";
      };
      serviceConfig = {
        Type = "oneshot";
        # Keeps the unit "active (exited)" so waits on it see a terminal state
        # and sshd's After= ordering is satisfied exactly once.
        RemainAfterExit = true;
        ExecStart = "${cfg.package}/bin/pre-nixos boot";
      };
    };

    # sshd is held back: nothing pulls it in at boot; pre-nixos starts it with
    # `systemctl reload-or-restart --no-block` once sshd_config is hardened
    # and root's key is in place. After= stops a manual start from racing
    # the rewrite.
    services.openssh.enable = true;
    services.openssh.settings.PermitRootLogin = lib.mkForce "prohibit-password";
    services.openssh.settings.PasswordAuthentication = lib.mkForce false;
    services.openssh.settings.KbdInteractiveAuthentication = lib.mkForce false;
    systemd.services.sshd = {
      wantedBy = lib.mkForce [ ];
      after = [ "pre-nixos.service" ];
      # Read the file pre-nixos rewrites, never a store copy (/bin, not /sbin:
      # a past bug).
      serviceConfig.ExecStart = lib.mkForce
        "${config.services.openssh.package}/bin/sshd -D -e -f /etc/ssh/sshd_config";
    };
  };
}
