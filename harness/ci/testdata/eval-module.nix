# Evaluates provisioner/nixos/module.nix without nixpkgs (none is available
# offline): lib and pkgs are stand-ins just rich enough for the module, and
# the result keeps the mk* wrappers visible (_type, priority) so tests can
# tell a forced value from a default. `nix-instantiate --eval --strict
# --json` turns it into JSON for harness/ci/module_test.go.
#
# A module change that uses a lib function not stubbed here fails with
# "attribute '<name>' missing": add the function below with its real meaning.
{ modulePath, rootKey ? "", autoInstall ? "" }:

let
  modulePathValue = /. + modulePath;
  moduleText = builtins.readFile modulePathValue;

  # Every pkgs.<name> the module mentions becomes a fake store path, so the
  # JSON shows which packages were used, by name.
  pkgNames = builtins.filter builtins.isString (builtins.split "[^A-Za-z0-9_-]+"
    (builtins.concatStringsSep " " (map builtins.head
      (builtins.filter (m: m != null)
        (map (w: builtins.match "pkgs\\.([A-Za-z0-9_-]+).*" w)
          (builtins.filter builtins.isString (builtins.split "[^A-Za-z0-9_.-]+" moduleText)))))));
  fakePkg = name: { outPath = "/nix/store/fake-${name}"; inherit name; pname = name; version = "0-fake"; };
  pkgs = builtins.listToAttrs (map (n: { name = n; value = fakePkg n; }) pkgNames)
    // { path = "/nix/store/fake-nixpkgs"; };

  mk = type: priority: content: { _type = type; inherit priority content; };
  lib = rec {
    # NixOS never evaluates the content of a false mkIf; --strict would, so
    # leave it out (a false branch may rely on the condition, e.g. non-null).
    mkIf = condition: content: { _type = "if"; inherit condition; }
      // (if condition then { inherit content; } else { });
    mkForce = mk "override" 50;
    mkDefault = mk "override" 1000;
    mkOverride = priority: mk "override" priority;
    mkOption = attrs: { _type = "option"; } // builtins.removeAttrs attrs [ "type" ] // { type = attrs.type or "unspecified"; };
    mkEnableOption = description: { _type = "option"; type = "bool"; default = false; inherit description; };
    types = {
      str = "str"; bool = "bool"; package = "package"; path = "path"; int = "int";
      nullOr = t: "nullOr ${t}";
      listOf = t: "listOf ${t}";
      attrsOf = t: "attrsOf ${t}";
    };
    optionalAttrs = cond: attrs: if cond then attrs else { };
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalString = cond: s: if cond then s else "";
    hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
    hasSuffix = suffix: s:
      let ls = builtins.stringLength s; lx = builtins.stringLength suffix;
      in ls >= lx && builtins.substring (ls - lx) lx s == suffix;
    removeSuffix = suffix: s:
      if hasSuffix suffix s
      then builtins.substring 0 (builtins.stringLength s - builtins.stringLength suffix) s
      else s;
    concatStringsSep = builtins.concatStringsSep;
    makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${p}/bin") ps);
  };

  config = {
    services.pre-nixos = {
      enable = true;
      package = fakePkg "pre-nixos" // { version = "0.1.0-test"; };
      rootKey = if rootKey == "" then null else rootKey;
      inherit autoInstall;
    };
    services.openssh.package = fakePkg "openssh";
    nix.package = fakePkg "nix";
    system.nixos.label = "test-label";
  };

  module = import modulePathValue { inherit config lib pkgs; };
in
{
  inherit pkgNames;
  inherit (module) options;
  config = module.config;
}
