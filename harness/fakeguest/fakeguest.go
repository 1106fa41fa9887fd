// Package fakeguest simulates a guest's serial console for unit tests: a getty, a login,
// shells with echo and coloured prompts, sudo and su, and the framing functions, plus
// the misbehaviours that broke the Python harness bootlab replaces (echoed markers,
// split escape sequences, stale prompts, kernel lines inside output, CR CR LF endings, PS2 prompts,
// cursor-position queries, password prompts, an early exit).
//
// It interprets only the lines the harness types, not a real shell language: enough to
// exercise the harness's side of every dialogue in milliseconds.
package fakeguest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bootlab/bootlab/harness/frame"
)

// Behaviour selects what the simulated guest does.
type Behaviour struct {
	Hostname string
	// Boot is printed first (kernel chatter).
	Boot string
	// Login: "getty" (login prompt, user+password), "auto" (login prompt then automatic
	// login of AutoUser), "root-shell" (a root shell straight away), "silent" (prints
	// Boot and then nothing), "exit" (closes the line before any output).
	Login    string
	AutoUser string
	Users    map[string]string // user -> password; "root" is uid 0, others 1000
	// SudoPassword: "" means sudo does not ask; otherwise it asks and wants this.
	SudoPassword string
	NoSudo       bool // sudo: command not found
	// Console quirks.
	ColourPrompt bool // SGR colours and an OSC title around the prompt
	CRCRLF       bool // end lines with \r\r\n
	SplitEscape  bool // write ESC[?2004l in two writes around each prompt
	AskDSR       bool // send ESC[6n before the first prompt and wait for a reply
	// LineEdit plays busybox ash's line editor: while echo is on it prints the prompt,
	// then asks where the cursor is (ESC[6n) and swallows the report as it reads the
	// line; with echo off (`stty -echo`) ash reads in cooked mode, where a report is
	// ordinary input that ends up in the command line (`sh: 1R__bl: not found`).
	LineEdit    bool
	EchoAlways  bool   // keep echoing even after stty -echo (echoes the awaited markers)
	StalePrompt bool   // print an extra prompt after each command
	KernelNoise bool   // write a kernel line in the middle of each framed output
	Broadcast   string // written in the middle of the first framed output (corrupts it once)
	PS2         bool   // print "> " continuation prompts for multi-line input
	// Commands answers framed commands; the default understands id -u, echo, true,
	// false and "(exit N)"; "exit N", "exec true", "kill -9 $$" and "reboot -f" end the
	// shell (see Guest.ends).
	Commands func(sh *Shell, cmd string) (out []byte, status int)
	// Delay before answering each framed command.
	Delay time.Duration
	// PromptDelay comes before every shell prompt, SudoDelay before sudo's password
	// prompt: a slow guest, where the prompt after a command lands after the harness
	// has typed the next thing.
	PromptDelay, SudoDelay time.Duration
	// Channel is the guest side of the virtio-serial frame port (nil: the VM has none,
	// so __blc reports status 1). ChannelBusy makes opening it fail as a port held open
	// elsewhere does (status 3); ChannelDead opens it but drops what is written, like a
	// port whose host side never reads.
	Channel     io.Writer
	ChannelBusy bool
	ChannelDead bool
	// NoTmp: no directory takes the console protocol's output file (a guest without a
	// writable /tmp), so __bl ends every frame with its F marker.
	NoTmp bool
	// LoginAgain: when the login shell ends, the getty prints a login prompt again (as
	// systemd respawns it) instead of the line closing.
	LoginAgain bool
	// AfterFirstPrompt is written right after the first shell prompt, on its line (a
	// late kernel message such as busybox images print: `[ 5.1] tsc: Refined TSC`).
	AfterFirstPrompt string
}

// Guest is a running simulation.
type Guest struct {
	b    Behaviour
	rw   io.ReadWriter
	wmu  sync.Mutex
	in   *bufio.Reader
	done chan struct{}
	// Seen records every line the guest received, for assertions.
	mu   sync.Mutex
	seen []string
	err  error
	cprs int
}

// CursorReports counts the cursor position reports the guest received.
func (g *Guest) CursorReports() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cprs
}

// Shell is the state of one simulated shell.
type Shell struct {
	User      string
	UID       int
	Echo      bool
	Functions bool   // the framing functions are defined
	ChanFuncs bool   // the channel functions are defined
	ChanOpen  bool   // this shell holds the frame port open on fd 7
	Trap      bool   // the exit trap (frame.ExitTrap) is set
	PS1       string // set by the harness's setup line; empty: the default prompt
	chNonce   string
	lastOut   []byte
	lastStat  int
	typed     frame.TypedDecoder
}

// Start runs a guest on rw (the slave side of a pty) until its input ends. closeLine is
// called when the guest powers off or exits, to end the line like QEMU exiting would.
func Start(rw io.ReadWriter, b Behaviour, closeLine func()) *Guest {
	if b.Hostname == "" {
		b.Hostname = "fake"
	}
	if b.Users == nil {
		b.Users = map[string]string{"user": "user", "root": "root"}
	}
	g := &Guest{b: b, rw: rw, in: bufio.NewReader(rw), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		g.err = g.run()
		if closeLine != nil {
			closeLine()
		}
	}()
	return g
}

// Done is closed when the guest has stopped.
func (g *Guest) Done() <-chan struct{} { return g.done }

// Seen returns the lines typed so far.
func (g *Guest) Seen() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.seen...)
}

func (g *Guest) nl() string {
	if g.b.CRCRLF {
		return "\r\r\n"
	}
	return "\r\n"
}

func (g *Guest) write(s string) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	_, _ = io.WriteString(g.rw, s)
}

func (g *Guest) lines(s string) string {
	return strings.ReplaceAll(s, "\n", g.nl())
}

// readLine reads one typed line; with echo it sends the bytes back like a tty would.
func (g *Guest) readLine(echo bool) (string, error) {
	var b strings.Builder
	for {
		c, err := g.in.ReadByte()
		if err != nil {
			return "", err
		}
		if c == 0x1b && (!g.b.LineEdit || echo) {
			// A terminal reply such as a cursor position report: swallow it whole.
			if g.readEscape() {
				continue
			}
		}
		if echo || g.b.EchoAlways {
			if c == '\n' || c == '\r' {
				g.write(g.nl())
			} else {
				g.write(string([]byte{c}))
			}
		}
		switch c {
		case '\r', '\n':
			line := b.String()
			g.mu.Lock()
			g.seen = append(g.seen, line)
			g.mu.Unlock()
			return line, nil
		case 0x03:
			b.Reset()
			g.mu.Lock()
			g.seen = append(g.seen, "^C")
			g.mu.Unlock()
			return "\x03", nil
		default:
			b.WriteByte(c)
		}
	}
}

var cprRe = regexp.MustCompile(`^\[[0-9]+;[0-9]+R$`)

func (g *Guest) readEscape() bool {
	var seq []byte
	for len(seq) < 16 {
		c, err := g.in.ReadByte()
		if err != nil {
			return true
		}
		seq = append(seq, c)
		if c >= '@' && c <= '~' && len(seq) > 1 {
			break
		}
	}
	if cprRe.Match(seq) {
		g.mu.Lock()
		g.cprs++
		g.mu.Unlock()
	}
	return true
}

func (g *Guest) run() error {
	if g.b.Login == "exit" {
		return nil
	}
	g.write(g.lines(g.b.Boot))
	switch g.b.Login {
	case "silent":
		_, _ = io.Copy(io.Discard, g.in)
		return nil
	case "root-shell":
		return g.shell(&Shell{User: "root", UID: 0, Echo: true})
	}
	for {
		g.write(g.nl() + g.b.Hostname + " login: ")
		if g.b.Login == "auto" {
			g.write(g.b.AutoUser + " (automatic login)" + g.nl())
			return g.shell(newShell(g.b.AutoUser))
		}
		user, err := g.readLine(true)
		if err != nil {
			return err
		}
		g.write("Password: ")
		pw, err := g.readLine(false)
		if err != nil {
			return err
		}
		g.write(g.nl())
		if want, ok := g.b.Users[user]; ok && want == pw {
			err := g.shell(newShell(user))
			if err != nil || !g.b.LoginAgain {
				return err
			}
			continue
		}
		g.write(g.lines("\nLogin incorrect\n"))
	}
}

func newShell(user string) *Shell {
	uid := 1000
	if user == "root" {
		uid = 0
	}
	return &Shell{User: user, UID: uid, Echo: true}
}

func (g *Guest) prompt(sh *Shell) {
	time.Sleep(g.b.PromptDelay)
	if g.b.AskDSR {
		// Like busybox: ask where the cursor is; the answer arrives as input and is
		// swallowed by readLine, which records it.
		g.write("\x1b[6n")
	}
	sign := "$"
	if sh.UID == 0 {
		sign = "#"
	}
	p := sh.User + "@" + g.b.Hostname + ":~" + sign + " "
	if sh.PS1 != "" {
		p = sh.PS1
	}
	if g.b.ColourPrompt {
		p = "\x1b[1;32m[\x1b]0;" + sh.User + "@" + g.b.Hostname + ": ~\a" + sh.User + "@" + g.b.Hostname + ":~]" + sign + "\x1b[0m "
	}
	if g.b.SplitEscape {
		g.write("\x1b[?20")
		time.Sleep(time.Millisecond)
		g.write("04h" + p)
		return
	}
	if g.b.LineEdit && sh.Echo {
		// busybox: parse_and_put_prompt, then ask_terminal.
		p += "\x1b[6n"
	}
	g.write("\x1b[?2004h" + p)
}

var (
	blRe      = regexp.MustCompile(`^__bl ([a-z0-9-]+) (.*)$`)
	blxRe     = regexp.MustCompile(`^__blx ([a-z0-9-]+)$`)
	blfRe     = regexp.MustCompile(`^__blf ([a-z0-9-]+) (.*)$`)
	ps1Re     = regexp.MustCompile(`PS1='([^']*)'`)
	exitRe    = regexp.MustCompile(`^exit ([0-9]+)$`)
	subExitRe = regexp.MustCompile(`^\(exit ([0-9]+)\)$`)
)

// shell runs one shell until it exits; it returns nil when the guest should keep
// running the parent shell.
func (g *Guest) shell(sh *Shell) error {
	first := true
	for {
		g.prompt(sh)
		if first && g.b.AfterFirstPrompt != "" {
			g.write(g.b.AfterFirstPrompt)
		}
		first = false
		line, err := g.readLine(sh.Echo)
		if err != nil {
			return err
		}
		if g.b.SplitEscape {
			g.write("\x1b[?20")
			g.write("04l")
		}
		if g.b.PS2 && openQuote(line) {
			// An unterminated quote: keep reading continuation lines like sh does.
			for openQuote(line) {
				g.write("> ")
				more, err := g.readLine(sh.Echo)
				if err != nil {
					return err
				}
				line += "\n" + more
			}
		}
		exit, err := g.execLine(sh, line)
		if err != nil || exit {
			return err
		}
		if g.b.StalePrompt {
			g.prompt(sh)
		}
	}
}

// execLine runs one typed line. exit reports that the shell ended (logout).
func (g *Guest) execLine(sh *Shell, line string) (exit bool, err error) {
	line = strings.TrimSpace(line)
	switch {
	case line == "" || line == "\x03":
		return false, nil
	case strings.HasPrefix(line, "stty -echo") || strings.Contains(line, "__bl(){"):
		if strings.Contains(line, "stty -echo") {
			sh.Echo = false
		}
		if m := ps1Re.FindStringSubmatch(line); m != nil {
			sh.PS1 = m[1]
		}
		if strings.Contains(line, "__bl(){") {
			sh.Functions = true
		}
		return false, nil
	case strings.HasPrefix(line, "stty echo"):
		// The harness hands the shell to a person (shell.HandOver).
		sh.Echo = true
		if m := ps1Re.FindStringSubmatch(line); m != nil {
			sh.PS1 = m[1]
		}
		return false, nil
	case strings.HasPrefix(line, "__blc(){"):
		sh.ChanFuncs = true
		return false, nil
	case line == frame.ExitTrap:
		sh.Trap = true
		return false, nil
	case strings.HasPrefix(line, "__blt(){") || strings.HasPrefix(line, "__blx(){"):
		return false, nil
	case line == "poweroff" || line == "poweroff -f":
		if sh.UID != 0 {
			g.write(g.lines("Failed to power off system: Interactive authentication required.\n"))
			return false, nil
		}
		g.write(g.lines("reboot: Power down\n"))
		return true, errPoweroff
	case line == "exit" || line == "logout":
		return true, nil
	case line == "sudo -i":
		return false, g.sudo(sh)
	case line == "su -" || line == "su":
		return false, g.su(sh)
	}
	if fn, id, cmd, handled, done := sh.typed.Line(line); handled {
		// A long or non-printable command, typed encoded in pieces.
		switch {
		case !done:
		case fn == "__blf" && sh.ChanFuncs:
			return g.channelFramed(sh, id, cmd)
		case fn == "__bl" && sh.Functions:
			return g.framed(sh, id, cmd)
		}
		return false, nil
	}
	if m := blxRe.FindStringSubmatch(line); m != nil && sh.Functions {
		g.write(string(frame.Encode(m[1], sh.lastStat, sh.lastOut)))
		return false, nil
	}
	if m := blfRe.FindStringSubmatch(line); m != nil && sh.ChanFuncs {
		return g.channelFramed(sh, m[1], sh.framedCommand(m[2]))
	}
	if m := blRe.FindStringSubmatch(line); m != nil && sh.Functions {
		return g.framed(sh, m[1], sh.framedCommand(m[2]))
	}
	name, _, _ := strings.Cut(line, " ")
	g.write(g.lines(fmt.Sprintf("-sh: %s: not found\n", name)))
	return false, nil
}

// framedCommand is the command a framing function was given as one quoted word.
func (sh *Shell) framedCommand(arg string) string { return unquote(arg) }

var errPoweroff = fmt.Errorf("powered off")

// Err is why the guest stopped (nil for a clean end of input or a poweroff).
func (g *Guest) Err() error {
	if g.err == errPoweroff || g.err == io.EOF {
		return nil
	}
	return g.err
}

func (g *Guest) framed(sh *Shell, id, cmd string) (exit bool, err error) {
	g.write(g.lines(frame.BeginMarker(id) + "\n"))
	if g.b.NoTmp {
		// What __bl prints when no directory takes its output file (busybox's words).
		g.write(g.lines("@@BLF:" + id + ":sh: can't create /tmp/.bl.83.o: nonexistent directory; sh: can't create /dev/shm/.bl.83.o: nonexistent directory@@\n"))
		return false, nil
	}
	if g.b.Delay > 0 {
		time.Sleep(g.b.Delay)
	}
	if exit, err, ends := g.ends(sh, cmd); ends {
		return exit, err
	}
	out, status := g.command(sh, cmd)
	sh.lastOut, sh.lastStat = out, status
	enc := frame.Encode(id, status, out)
	switch {
	case g.b.Broadcast != "":
		// A wall message landing in the middle of a base64 line, once.
		at := bytes.IndexByte(enc, '\n') + 5
		if at > 5 && at < len(enc) {
			enc = append(append(append([]byte(nil), enc[:at]...), []byte(g.b.Broadcast)...), enc[at:]...)
			g.b.Broadcast = ""
		}
	case g.b.KernelNoise:
		at := len(enc) / 2
		enc = append(append(append([]byte(nil), enc[:at]...), []byte("[   42.123456] md/raid1:md127: active with 2 out of 2 mirrors\n")...), enc[at:]...)
	}
	// The BEGIN line was printed before the command ran; the noise lands after it.
	enc = enc[len(frame.BeginMarker(id))+1:]
	g.write(strings.ReplaceAll(string(enc), "\n", g.nl()))
	return false, nil
}

// ends plays the commands that end the shell running them: `exit N` (the exit trap
// reports it on the console and, as dash does, on the port), `exec true` and `kill -9
// $$` (nothing reports them; the shell underneath prints its prompt), and `reboot -f`
// (the kernel's banner, then the line closes as QEMU exits with -no-reboot).
func (g *Guest) ends(sh *Shell, cmd string) (exit bool, err error, ends bool) {
	switch {
	case exitRe.MatchString(cmd):
		n, _ := strconv.Atoi(exitRe.FindStringSubmatch(cmd)[1])
		if sh.Trap {
			g.write(g.lines(fmt.Sprintf("@@BLX:%d@@\n", n)))
			if sh.ChanOpen && g.b.Channel != nil && !g.b.ChannelDead {
				g.mu.Lock()
				_, _ = fmt.Fprintf(g.b.Channel, "\x1eX%s:%d\x1f", sh.chNonce, n)
				g.mu.Unlock()
			}
		}
		return true, nil, true
	case cmd == "exec true" || cmd == "kill -9 $$":
		return true, nil, true
	case cmd == "reboot -f":
		g.write(g.lines("[   51.234567] reboot: Restarting system\n"))
		return true, errPoweroff, true
	}
	return false, nil, false
}

// channelFramed is __blf: the output goes to the port, never to the console.
func (g *Guest) channelFramed(sh *Shell, id, cmd string) (exit bool, err error) {
	if !sh.ChanOpen {
		g.write(g.lines("-sh: 7: Bad file descriptor\n"))
		return false, nil
	}
	if g.b.Delay > 0 {
		time.Sleep(g.b.Delay)
	}
	if exit, err, ends := g.ends(sh, cmd); ends {
		return exit, err
	}
	out, status := g.command(sh, cmd)
	if g.b.KernelNoise {
		// The console is as noisy as ever; the port is not touched by it.
		g.write(g.lines("[   42.123456] md/raid1:md127: active with 2 out of 2 mirrors\n"))
	}
	if g.b.ChannelDead {
		return false, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, _ = g.b.Channel.Write(frame.EncodeChannel(sh.chNonce+"-"+id, status, out))
	return false, nil
}

// openChannel is __blc.
func (g *Guest) openChannel(sh *Shell) ([]byte, int) {
	switch {
	case !sh.ChanFuncs:
		return []byte("-sh: __blc: not found\n"), 127
	case g.b.Channel == nil:
		return nil, 1
	case g.b.ChannelBusy:
		return []byte("-sh: can't create /dev/vport1p1: Device or resource busy\n"), 3
	}
	sh.ChanOpen = true
	return nil, 0
}

func (g *Guest) command(sh *Shell, cmd string) ([]byte, int) {
	if nonce, ok := strings.CutPrefix(cmd, "__blc "); ok {
		sh.chNonce = nonce
		return g.openChannel(sh)
	}
	if cmd == "exec 7>&- 6<&-" {
		sh.ChanOpen = false
		return nil, 0
	}
	if g.b.Commands != nil {
		if out, st := g.b.Commands(sh, cmd); out != nil || st >= 0 {
			return out, st
		}
	}
	switch {
	case cmd == "id -u":
		return []byte(strconv.Itoa(sh.UID) + "\n"), 0
	case cmd == "true" || cmd == "dmesg -n 1" || cmd == ":":
		return nil, 0
	case cmd == "false":
		return nil, 1
	case strings.HasPrefix(cmd, "echo "):
		return []byte(unquote(strings.TrimPrefix(cmd, "echo ")) + "\n"), 0
	}
	if m := subExitRe.FindStringSubmatch(cmd); m != nil {
		n, _ := strconv.Atoi(m[1])
		return nil, n
	}
	return []byte("sh: " + cmd + ": not found\n"), 127
}

func (g *Guest) sudo(sh *Shell) error {
	if g.b.NoSudo {
		g.write(g.lines("-sh: sudo: not found\n"))
		return nil
	}
	if g.b.SudoPassword != "" && sh.UID != 0 {
		for try := 0; try < 3; try++ {
			time.Sleep(g.b.SudoDelay)
			g.write("[sudo] password for " + sh.User + ": ")
			pw, err := g.readLine(false)
			if err != nil {
				return err
			}
			g.write(g.nl())
			if pw == "\x03" {
				return nil
			}
			if pw == g.b.SudoPassword {
				return g.sub(&Shell{User: "root", UID: 0, Echo: sh.Echo})
			}
			g.write(g.lines("Sorry, try again.\n"))
		}
		g.write(g.lines("sudo: 3 incorrect password attempts\n"))
		return nil
	}
	return g.sub(&Shell{User: "root", UID: 0, Echo: sh.Echo})
}

func (g *Guest) su(sh *Shell) error {
	if sh.UID != 0 {
		g.write("Password: ")
		pw, err := g.readLine(false)
		if err != nil {
			return err
		}
		g.write(g.nl())
		if pw == "\x03" {
			return nil
		}
		if pw != g.b.Users["root"] {
			time.Sleep(10 * time.Millisecond)
			g.write(g.lines("su: Authentication failure\n"))
			return nil
		}
	}
	return g.sub(&Shell{User: "root", UID: 0, Echo: sh.Echo})
}

// sub runs a child shell: like a real one, it does not inherit shell functions, but the
// terminal (echo) settings are the same tty's.
func (g *Guest) sub(child *Shell) error {
	err := g.shell(child)
	if err == errPoweroff {
		return err
	}
	return err
}

// openQuote reports whether s ends inside a single-quoted string, honouring the \'
// escapes that frame.Quote produces between quoted pieces.
func openQuote(s string) bool {
	in := false
	for i := 0; i < len(s); i++ {
		switch {
		case in && s[i] == '\'':
			in = false
		case !in && s[i] == '\\':
			i++
		case !in && s[i] == '\'':
			in = true
		}
	}
	return in
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return strings.ReplaceAll(s[1:len(s)-1], `'\''`, "'")
	}
	return s
}
