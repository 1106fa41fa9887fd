package ci

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testRootKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootlabShipTestKeyOnly test@ship"

// evalModule evaluates provisioner/nixos/module.nix with stand-in lib and
// pkgs (testdata/eval-module.nix) and returns the module's `config` after
// the top-level mkIf, which must be conditioned on enable.
func evalModule(t *testing.T, rootKey string) map[string]any {
	t.Helper()
	root := repoRoot(t)
	bin := requireTool(t, "nix-instantiate", installNix)
	cmd := exec.Command(bin, "--eval", "--strict", "--json", "--readonly-mode",
		filepath.Join(root, "harness", "ci", "testdata", "eval-module.nix"),
		"--argstr", "modulePath", filepath.Join(root, "provisioner", "nixos", "module.nix"),
		"--argstr", "rootKey", rootKey)
	cmd.Env = nixEnv(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("evaluating the module: %v\n%s", err, stderr.String())
	}
	var doc struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("module evaluation is not JSON: %v", err)
	}
	cfg := doc.Config
	if cfg["_type"] != "if" || cfg["condition"] != true {
		t.Fatalf("module config must be lib.mkIf cfg.enable { ... } so importing it changes nothing until enabled; got _type=%v", cfg["_type"])
	}
	content, ok := cfg["content"].(map[string]any)
	if !ok {
		t.Fatalf("mkIf content is %T, want an attribute set", cfg["content"])
	}
	return content
}

// at walks a dotted path of attribute names ("systemd/services/sshd").
func at(t *testing.T, v any, path ...string) any {
	t.Helper()
	for i, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s is %T, not an attribute set", strings.Join(path[:i], "."), v)
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("module does not set %s", strings.Join(path[:i+1], "."))
		}
	}
	return v
}

// forced unwraps lib.mkForce, failing when the value is not forced: the
// installer profile sets these options itself, so only a forced value wins.
func forced(t *testing.T, v any, what string) any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok || m["_type"] != "override" || m["priority"] != float64(50) {
		t.Fatalf("%s must be lib.mkForce (the installer profile sets it too); got %v", what, v)
	}
	return m["content"]
}

func strList(t *testing.T, v any, what string) []string {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s is %T, want a list", what, v)
	}
	out := make([]string, len(l))
	for i, x := range l {
		s, ok := x.(string)
		if !ok {
			t.Fatalf("%s[%d] is %T, want a string", what, i, x)
		}
		out[i] = s
	}
	return out
}

func TestModuleServiceRunsBootFlowWithTools(t *testing.T) {
	cfg := evalModule(t, testRootKey)
	svc := at(t, cfg, "systemd", "services", "pre-nixos")

	sc := at(t, svc, "serviceConfig")
	if got := at(t, sc, "Type"); got != "oneshot" {
		t.Errorf("pre-nixos Type = %v, want oneshot", got)
	}
	exec, _ := at(t, sc, "ExecStart").(string)
	if !strings.HasSuffix(exec, "/bin/pre-nixos boot") || !strings.HasPrefix(exec, "/nix/store/fake-pre-nixos/") {
		t.Errorf("pre-nixos ExecStart = %q, want the package's bin/pre-nixos boot", exec)
	}
	if got := strList(t, at(t, svc, "wantedBy"), "wantedBy"); !slices.Contains(got, "multi-user.target") {
		t.Errorf("pre-nixos wantedBy = %v, want multi-user.target (it must run at every boot)", got)
	}
	// The Python pre-nixos's unit had no network ordering on purpose: pre-nixos brings the
	// LAN up itself, and waiting for network-online hangs NIC-less machines.
	if m := svc.(map[string]any); m["after"] != nil || m["wants"] != nil {
		for _, k := range []string{"after", "wants"} {
			for _, u := range anyStrings(m[k]) {
				if strings.HasPrefix(u, "network") {
					t.Errorf("pre-nixos %s includes %s; it must not wait for the network", k, u)
				}
			}
		}
	}

	path := strList(t, at(t, svc, "path"), "pre-nixos path")
	for _, tool := range []string{"disko", "lvm2", "mdadm", "gptfdisk", "parted", "dosfstools",
		"e2fsprogs", "util-linux", "iproute2", "systemd", "kmod", "coreutils"} {
		if !slices.Contains(path, "/nix/store/fake-"+tool) {
			t.Errorf("pre-nixos service PATH lacks %s; got %v", tool, path)
		}
	}
	// disko evaluates its config with nix; without it disko cannot run.
	if !slices.Contains(path, "/nix/store/fake-nix") {
		t.Errorf("pre-nixos service PATH lacks nix (config.nix.package), which disko needs")
	}

	env := at(t, svc, "environment")
	for k, want := range map[string]string{
		"PRE_NIXOS_EXEC":          "1",
		"PRE_NIXOS_STATE_DIR":     "/run/pre-nixos",
		"PRE_NIXOS_ROOT_KEY_FILE": "/etc/pre-nixos/root_key.pub",
	} {
		if got := at(t, env, k); got != want {
			t.Errorf("pre-nixos environment %s = %v, want %q", k, got, want)
		}
	}
	if got, _ := at(t, env, "NIX_PATH").(string); !strings.HasPrefix(got, "nixpkgs=") {
		t.Errorf("pre-nixos NIX_PATH = %q, want nixpkgs=<pkgs.path> (disko needs <nixpkgs>)", got)
	}
}

func anyStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func TestModuleHoldsSshdBackUntilPreNixos(t *testing.T) {
	cfg := evalModule(t, testRootKey)
	if got := at(t, cfg, "services", "openssh", "enable"); got != true {
		t.Errorf("services.openssh.enable = %v, want true (pre-nixos starts it later)", got)
	}
	sshd := at(t, cfg, "systemd", "services", "sshd")
	wanted := forced(t, at(t, sshd, "wantedBy"), "systemd.services.sshd.wantedBy")
	if l, ok := wanted.([]any); !ok || len(l) != 0 {
		t.Errorf("sshd wantedBy = %v, want mkForce [ ] so nothing starts it at boot", wanted)
	}
	if after := strList(t, at(t, sshd, "after"), "sshd after"); !slices.Contains(after, "pre-nixos.service") {
		t.Errorf("sshd after = %v, want pre-nixos.service", after)
	}
	exec, _ := forced(t, at(t, sshd, "serviceConfig", "ExecStart"), "sshd ExecStart").(string)
	if !strings.Contains(exec, "/bin/sshd ") || strings.Contains(exec, "/sbin/") {
		t.Errorf("sshd ExecStart = %q, want <openssh>/bin/sshd (not /sbin, a past bug)", exec)
	}
	if !strings.Contains(exec, "-f /etc/ssh/sshd_config") {
		t.Errorf("sshd ExecStart = %q, want -f /etc/ssh/sshd_config, the file pre-nixos rewrites", exec)
	}
	settings := at(t, cfg, "services", "openssh", "settings")
	if got := forced(t, at(t, settings, "PasswordAuthentication"), "PasswordAuthentication"); got != false {
		t.Errorf("PasswordAuthentication = %v, want false", got)
	}
	if got := forced(t, at(t, settings, "PermitRootLogin"), "PermitRootLogin"); got != "prohibit-password" {
		t.Errorf("PermitRootLogin = %v, want prohibit-password", got)
	}
}

func TestModuleSerialConsole(t *testing.T) {
	cfg := evalModule(t, testRootKey)
	params := strList(t, at(t, cfg, "boot", "kernelParams"), "boot.kernelParams")
	serial := slices.Index(params, "console=ttyS0,115200n8")
	vga := slices.Index(params, "console=tty0")
	if serial < 0 || vga < 0 {
		t.Fatalf("boot.kernelParams = %v, want console=tty0 and console=ttyS0,115200n8", params)
	}
	// The last console= becomes /dev/console; the harness reads ttyS0.
	for _, p := range params[serial+1:] {
		if strings.HasPrefix(p, "console=") {
			t.Errorf("boot.kernelParams = %v: %s after ttyS0 would take /dev/console from the serial line", params, p)
		}
	}
	grub, _ := at(t, cfg, "boot", "loader", "grub", "extraConfig").(string)
	for _, want := range []string{"serial --speed=115200 --unit=0", "terminal_input serial", "terminal_output serial"} {
		if !strings.Contains(grub, want) {
			t.Errorf("GRUB extraConfig lacks %q:\n%s", want, grub)
		}
	}
}

func TestModuleNetworkdOnlyAfterPreNixos(t *testing.T) {
	cfg := evalModule(t, testRootKey)
	if got := at(t, cfg, "systemd", "network", "enable"); got != true {
		t.Errorf("systemd.network.enable = %v, want true", got)
	}
	net := at(t, cfg, "networking")
	if got := forced(t, at(t, net, "useNetworkd"), "networking.useNetworkd"); got != true {
		t.Errorf("networking.useNetworkd = %v, want true", got)
	}
	// DHCP waits for pre-nixos's 20-lan.network; a global DHCP would race it.
	if got := forced(t, at(t, net, "useDHCP"), "networking.useDHCP"); got != false {
		t.Errorf("networking.useDHCP = %v, want false", got)
	}
}

func TestModuleRootKey(t *testing.T) {
	const keyPath = "pre-nixos/root_key.pub" // environment.etc is relative to /etc
	with := evalModule(t, testRootKey)
	etc := at(t, with, "environment", "etc", keyPath).(map[string]any)
	if etc["_type"] != "if" || etc["condition"] != true {
		t.Fatalf("/etc/%s with a key: want mkIf true, got %v", keyPath, etc)
	}
	text, _ := at(t, etc, "content", "text").(string)
	if text != testRootKey+"\n" {
		t.Errorf("/etc/%s holds %q, want the key plus one newline", keyPath, text)
	}

	without := evalModule(t, "")
	etc = at(t, without, "environment", "etc", keyPath).(map[string]any)
	if etc["condition"] != false {
		t.Errorf("/etc/%s without a key must not be created (pre-nixos's missing-key path); got %v", keyPath, etc)
	}
	// The service is told where to look either way, so the missing-key
	// behaviour is pre-nixos's, not an accident of its compiled default.
	if got := at(t, without, "systemd", "services", "pre-nixos", "environment", "PRE_NIXOS_ROOT_KEY_FILE"); got != "/etc/"+keyPath {
		t.Errorf("PRE_NIXOS_ROOT_KEY_FILE = %v, want /etc/%s", got, keyPath)
	}
}
