// Package ci holds the checks on what bootlab ships outside Go and on how CI
// runs it: the NixOS module and flake, the GitHub workflows (linted with
// actionlint, their cheap jobs run as written and the command lines of the
// VM jobs checked against the real Makefile, flags and scenarios), and the
// helper scripts under .ci/. CI here has no Nix binary cache, so nothing
// under Nix can be built; these tests pin the invariants the harness depends
// on (sshd held back, serial console, service PATH, root key path) and keep
// the nightly scenario matrix complete.
//
// It also owns the scenario sharding rule (Shard), so the scenarios
// package's -shard flag and the nightly matrix cannot disagree.
//
// It lives under harness/ rather than .ci/ because `go test ./...` skips
// directories whose names start with a dot.
//
// Tools the tests need are never skipped when missing: the failure says what
// to install (nix-bin for nix-instantiate and nix-hash; actionlint from the
// Go module proxy; `make deps` installs all of them).
package ci
