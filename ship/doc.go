// Package ship holds the checks on what bootlab ships outside Go: the NixOS
// module and flake, and the GitHub workflows. CI here has no Nix binary
// cache, so nothing under Nix can be built; these tests pin the invariants
// the harness depends on (sshd held back, serial console, service PATH,
// root key path) and keep the nightly scenario matrix complete.
//
// It also owns the scenario sharding rule (Shard), so the scenarios
// package's -shard flag and the nightly matrix cannot disagree.
//
// Tools the tests need are never skipped when missing: the failure says what
// to install (nix-bin for nix-instantiate and nix-hash; actionlint from the
// Go module proxy).
package ship
