{
  description = "bootlab: a VM test harness for boot images, and pre-nixos, the provisioner it ships";

  # A release branch, so a lock moves only within one release: the first with
  # Go 1.26, which go.mod asks for (goFor below refuses an older Go at evaluation
  # time). Until a flake.lock is committed, the nightly nixos job locks it
  # and uploads the lock it used (docs/nix.md says how to commit it).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs = { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      # Recomputed by .ci/vendor-hash.sh (--update rewrites this line).
      # It changes whenever go.mod, go.sum or the set of imported external
      # packages changes; a stale value fails the goModules derivation with
      # "hash mismatch".
      vendorHash = "sha256-6QFQ4dlPjpQ47VMZUqBViCkcljpozTqTZK9sgTmkNiQ=";

      # The Go version go.mod requires; buildGoModule runs with
      # GOTOOLCHAIN=local, so an older nixpkgs Go fails deep inside the build.
      # Checking at evaluation time turns that into one clear sentence.
      goModRequires =
        let m = builtins.match ".*\ngo ([0-9.]+)\n.*" (builtins.readFile ./go.mod);
        in if m == null then "0" else builtins.head m;

      version = "0.1.0+${self.shortRev or self.dirtyShortRev or "dirty"}";

      # Everything but docs, workflows, CI scripts and the flake itself, so editing those
      # does not rebuild the binaries. Go files alone would not do: tests read
      # testdata/ and packages may go:embed non-Go files. (A flake's ./. is
      # already limited to files git tracks.) .ci/vendor-hash.sh vendors
      # from the same tracked files, which yields the same vendor tree since
      # nothing excluded here holds Go code.
      goSrc = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.difference ./. (lib.fileset.unions (lib.filter builtins.pathExists [
          ./docs
          ./.github
          ./flake.nix
          ./flake.lock
          ./README.md
          ./.ci
        ]));
      };

      goFor = pkgs:
        let go = pkgs.go_1_26 or pkgs.go;
        in if lib.versionOlder go.version goModRequires
          then throw "bootlab: go.mod requires Go ${goModRequires} but this nixpkgs has Go ${go.version}; update the nixpkgs input (nix flake update) or lower the go directive"
          else go;

      buildGo = pkgs: pkgs.buildGoModule.override { go = goFor pkgs; };

      preNixosFor = pkgs: let
        storageTools = with pkgs; [
          disko gptfdisk mdadm lvm2 parted dosfstools e2fsprogs util-linux kmod ethtool iproute2
        ];
      in (buildGo pkgs) {
        pname = "pre-nixos";
        inherit version vendorHash;
        src = goSrc;
        subPackages = [
          "provisioner/cmd/pre-nixos"
          "provisioner/cmd/pre-nixos-detect-storage"
          "provisioner/cmd/pre-nixos-console"
        ];
        # Static, like the binaries the Debian fixture ISO carries, so both
        # images run the same code without a glibc dependency.
        env.CGO_ENABLED = "0";
        ldflags = [ "-s" "-w" ];
        # Unit tests run once, in checks.unit, not inside every package build.
        doCheck = false;
        # `pre-nixos` run by hand (or via `nix run`) must find the same storage
        # tools as the service; prefixed so the known-good versions win. The
        # console helper only writes to terminals and stays unwrapped.
        nativeBuildInputs = [ pkgs.makeWrapper ];
        postInstall = ''
          for prog in pre-nixos pre-nixos-detect-storage; do
            wrapProgram $out/bin/$prog --prefix PATH : ${lib.makeBinPath storageTools}
          done
        '';
        meta = {
          description = "Minimal storage and network provisioner for NixOS boot images";
          license = lib.licenses.mit;
          mainProgram = "pre-nixos";
          platforms = lib.platforms.linux;
        };
      };

      bootlabFor = pkgs: (buildGo pkgs) {
        pname = "bootlab";
        inherit version vendorHash;
        src = goSrc;
        subPackages = [ "harness/cmd/bootlab" ];
        env.CGO_ENABLED = "0";
        ldflags = [ "-s" "-w" ];
        doCheck = false;
        nativeBuildInputs = [ pkgs.makeWrapper ];
        # The harness execs QEMU and the image tools by name.
        postInstall = ''
          wrapProgram $out/bin/bootlab --suffix PATH : ${lib.makeBinPath [
            pkgs.qemu
            pkgs.xorriso
            pkgs.squashfsTools
            pkgs.mmdebstrap
            pkgs.cpio
            pkgs.openssh
          ]}
        '';
        meta = {
          description = "VM test harness for boot images (QEMU + serial console)";
          license = lib.licenses.mit;
          mainProgram = "bootlab";
          platforms = lib.platforms.linux;
        };
      };

      # PRE_NIXOS_ROOT_KEY names a public key file, or holds the key itself.
      # Read only under --impure; pure evaluation sees "" and builds an image
      # without a key (with a warning, so nobody ships one by accident).
      rootKeyFromEnv =
        let
          raw = builtins.getEnv "PRE_NIXOS_ROOT_KEY";
          pwd = builtins.getEnv "PWD";
          isKeyText = builtins.match "(ssh-|ecdsa-|sk-).*" raw != null;
          asPath = if lib.hasPrefix "/" raw then raw else "${pwd}/${raw}";
        in
        if raw == "" then
          builtins.trace "bootlab: PRE_NIXOS_ROOT_KEY is unset (or evaluation is pure); building the image without a root SSH key" null
        else if isKeyText then raw
        else if builtins.pathExists asPath then builtins.readFile asPath
        else throw "bootlab: PRE_NIXOS_ROOT_KEY=${raw} is neither a public key nor an existing file (relative paths resolve against ${pwd}; build with --impure)";

      module = { pkgs, ... }: {
        imports = [ ./provisioner/nixos/module.nix ];
        services.pre-nixos.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.pre-nixos;
      };

      bootImageSystem = nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          "${nixpkgs}/nixos/modules/installer/cd-dvd/installation-cd-minimal.nix"
          module
          ({ lib, ... }: {
            services.pre-nixos.enable = true;
            services.pre-nixos.rootKey = rootKeyFromEnv;
            # isolinux waits this long at its menu on every harness boot.
            boot.loader.timeout = lib.mkForce 1;
            # bootlab carries framed command output on a virtio-serial port
            # (org.bootlab.frame) once it has a root shell; udev would load
            # the driver when the port exists, this keeps it independent of
            # coldplug order. Harmless on a machine without the port.
            boot.kernelModules = [ "virtio_console" ];
          })
        ];
      };
    in
    {
      packages = forAllSystems (system: pkgs: {
        pre-nixos = preNixosFor pkgs;
        bootlab = bootlabFor pkgs;
        default = self.packages.${system}.bootlab;
      } // lib.optionalAttrs (system == "x86_64-linux") {
        bootImage = bootImageSystem.config.system.build.isoImage;
      });

      nixosModules.pre-nixos = module;
      nixosModules.default = module;

      nixosConfigurations.pre-installer = bootImageSystem;

      # What `make` and the image builders call (artifacts/images: apt-cache, apt-get,
      # dpkg-deb, mmdebstrap, mksquashfs, xorriso, a static busybox, cpio; the ISOLINUX
      # files). The builders fetch Debian packages by name from the Debian archive, so
      # building images also needs Debian's apt sources; docs/nix.md says how.
      devShells = forAllSystems (system: pkgs: {
        default = pkgs.mkShell {
          packages = [
            (goFor pkgs)
            pkgs.gopls
            pkgs.go-tools # staticcheck
            pkgs.actionlint
            pkgs.shellcheck
            pkgs.gnumake
            pkgs.git
            pkgs.curl
            pkgs.nix # nix-instantiate --parse and nix-hash for make nixcheck
            pkgs.qemu
            pkgs.apt
            pkgs.dpkg
            pkgs.mmdebstrap
            pkgs.squashfsTools
            pkgs.xorriso
            pkgs.cpio
            pkgs.pkgsStatic.busybox # copied into the mini image's initramfs, so static
            pkgs.openssh
            pkgs.gptfdisk
            pkgs.dosfstools
            pkgs.e2fsprogs
          ] ++ lib.optionals pkgs.stdenv.hostPlatform.isx86_64 [ pkgs.syslinux pkgs.chromium ];
          # The names the code reads (artifacts/images: BOOTLAB_CACHE).
          shellHook = ''
            export BOOTLAB_CACHE="''${BOOTLAB_CACHE:-$HOME/.cache/bootlab}"
          '';
        };
      });

      # What the build sandbox can run (no QEMU, no network, no git): `make sandbox-unit`,
      # the unit packages minus harness/ci and artifacts/report (Makefile SANDBOX_PKGS),
      # and the parse check of every .nix file. VM packages run in `make vm` only.
      checks = forAllSystems (system: pkgs:
        let
          busyboxOnly = pkgs.runCommand "busybox-only" { } ''
            mkdir -p $out/bin
            ln -s ${pkgs.busybox}/bin/busybox $out/bin/busybox
          '';
        in {
        unit = (buildGo pkgs) {
          pname = "bootlab-unit-tests";
          inherit version vendorHash;
          src = goSrc;
          # Empty subPackages compiles every package, so a package that does
          # not build fails here rather than in a user's nix build.
          subPackages = [ ];
          env.CGO_ENABLED = "0";
          doCheck = true;
          # artifacts/isoinspect's tests build small ISOs and initrds; harness/frame's
          # run the framed-command protocol under bash, dash and busybox ash. Only
          # the busybox binary comes onto PATH: its applets would shadow coreutils.
          nativeCheckInputs = [ pkgs.gnumake pkgs.xorriso pkgs.squashfsTools pkgs.cpio pkgs.openssh pkgs.zstd pkgs.xz pkgs.dash busyboxOnly ];
          checkPhase = ''
            runHook preCheck
            # Tests may locate testdata through source paths.
            export GOFLAGS=''${GOFLAGS//-trimpath/}
            make sandbox-unit GO=go SHELL="$SHELL"
            runHook postCheck
          '';
          installPhase = ''
            runHook preInstall
            echo "unit tests passed" > $out
            runHook postInstall
          '';
        };
        nix-parse = pkgs.runCommand "bootlab-nix-parse" { nativeBuildInputs = [ pkgs.nix ]; } ''
          export NIX_STATE_DIR=$TMPDIR/state NIX_LOG_DIR=$TMPDIR/log
          for f in $(find ${self} -name '*.nix'); do
            nix-instantiate --parse "$f" > /dev/null
          done
          touch $out
        '';
        pre-nixos = self.packages.${system}.pre-nixos;
        bootlab = self.packages.${system}.bootlab;
      });

      formatter = forAllSystems (system: pkgs: pkgs.nixpkgs-fmt);
    };
}
