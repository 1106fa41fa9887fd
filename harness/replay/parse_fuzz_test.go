package replay

import (
	"bytes"
	"os"
	"regexp"
	"testing"
)

var loginEnd = regexp.MustCompile(`\(automatic login\)\r*\n?$`)

// FuzzParse: whatever the log, the played prefix is a prefix of it; a login recording
// is cut right after the automatic-login announcement (and its line end), so nothing
// typed after it is played; a QEMU error is played whole.
func FuzzParse(f *testing.F) {
	for _, p := range []string{
		"testdata/nixos-consoles/nixos-25.05-autoinstall-full-boot.serial.log",
		"testdata/nixos-consoles/nixos-24.05-isolinux-autologin.serial.log",
		"testdata/nixos-consoles/qemu-disk-lock-failure.serial.log",
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("nixos login: nixos (automatic login)\r\r\r\nroot typed this"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := Parse(b)
		if !bytes.HasPrefix(b, r.Prefix) {
			t.Fatalf("prefix %q is not a prefix of the log", r.Prefix)
		}
		switch {
		case r.Login:
			if !loginEnd.Match(r.Prefix) {
				t.Fatalf("login prefix does not end at the announcement: %q", r.Prefix[max(0, len(r.Prefix)-40):])
			}
			if bytes.Count(r.Prefix, []byte("(automatic login)")) != 1 {
				t.Fatalf("the prefix runs past the first automatic login")
			}
		case r.QEMUError:
			if !bytes.Equal(r.Prefix, b) {
				t.Fatal("a QEMU error is played whole")
			}
		default:
			if !bytes.Equal(r.Prefix, b) {
				t.Fatal("a log without a login is played whole")
			}
		}
	})
}
