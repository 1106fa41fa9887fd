package dialog

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/shell"
)

// WalkDebianInstallerToShell drives Debian's installer from its first dialog to the
// busybox shell of "Execute a shell", by what each screen shows: the language question
// (English preselected), Tab to <Go Back> and Enter to the main menu, down to "Execute a
// shell" (walked by highlight, not counted), Enter, and <Continue>. Each screen is saved
// in the run directory and marked (installer_first_dialog, installer_main_menu,
// installer_shell). first bounds the wait for the first dialog (the kernel and udev come
// before it, about a minute under TCG). It returns the first dialog's screen.
func (u *UI) WalkDebianInstallerToShell(ctx context.Context, first time.Duration) (string, error) {
	text, err := u.WaitFor(ctx, first, `the first installer dialog, "Select a language"`, func(text string, hl []string) bool {
		return OnScreen(text, "Select a language", "Language:", "English", "<Go Back>") && slices.Contains(hl, "English")
	})
	if err != nil {
		return "", err
	}
	u.Save("select-a-language")
	u.lab.Mark("installer_first_dialog")

	// Tab moves the focus from the list to <Go Back>; Enter takes it, which on the first
	// question leads to the main menu.
	if _, err := u.Press(ctx, KeyTab, "focus on <Go Back>", func(_ string, hl []string) bool {
		return slices.Contains(hl, "<Go Back>")
	}); err != nil {
		return text, err
	}
	if _, err := u.Press(ctx, KeyEnter, "the installer main menu", func(text string, hl []string) bool {
		return OnScreen(text, "Debian installer main menu", "Execute a shell") && len(hl) == 1
	}); err != nil {
		return text, err
	}
	u.Save("main-menu")
	u.lab.Mark("installer_main_menu")

	if err := u.SelectItem(ctx, "Execute a shell", 20); err != nil {
		return text, err
	}
	if _, err := u.Press(ctx, KeyEnter, `the "Execute a shell" confirmation`, func(text string, hl []string) bool {
		return OnScreen(text, "Interactive shell", "<Continue>") && slices.Contains(hl, "<Continue>")
	}); err != nil {
		return text, err
	}
	u.Save("execute-a-shell")

	// <Continue> has the focus: Enter starts busybox ash in the installer window.
	if _, err := u.Press(ctx, KeyEnter, "the installer's busybox shell", func(text string, _ []string) bool {
		return strings.Contains(text, "BusyBox") && shell.DebianInstaller.ShellPrompt.MatchString(LastRow(text)+" ")
	}); err != nil {
		return text, err
	}
	u.Save("shell")
	u.lab.Mark("installer_shell")
	return text, nil
}

// TakeDebianInstallerShell walks the installer to its shell (WalkDebianInstallerToShell,
// first bounding the wait for the first dialog), types the hand-off
// (DebianInstallerHandOff says why) and makes that shell the lab's, verified as root
// like any login, each step of which step bounds. It is how a lab whose image is the
// installer gets its root shell: the installer has nothing to log in to.
func (u *UI) TakeDebianInstallerShell(ctx context.Context, first, step time.Duration) (*shell.Shell, error) {
	if _, err := u.WalkDebianInstallerToShell(ctx, first); err != nil {
		return nil, err
	}
	from, err := u.lab.Type(ctx, DebianInstallerHandOff)
	if err != nil {
		return nil, u.Failure("typing the hand-off line", err)
	}
	sh, err := u.lab.AdoptShell(ctx, shell.DebianInstaller, lab.AdoptOptions{From: from, Step: step})
	if err != nil {
		return nil, u.Failure("getting a verified root shell from the installer's shell", err)
	}
	return sh, nil
}
