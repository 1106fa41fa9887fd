package faults

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

const childEnv = "BOOTLAB_FAULTS_CHILD"

// child is the test binary re-executed as a process that runs a lab and is then
// signalled by the parent test: "boot" blocks in login, "command" in a long command.
func child() int {
	lab.HandleSignals()
	spec, err := buildMiniSpec(images.MiniSpec{})
	if err != nil {
		fmt.Println("ERROR", err)
		return 3
	}
	ctx := context.Background()
	l, err := lab.Start(ctx, labtest.Config(), lab.Slug("fault-signal-"+os.Getenv(childEnv)), lab.Machine(spec))
	if err != nil {
		fmt.Println("ERROR", err)
		return 3
	}
	fmt.Println("RUNDIR", l.Dir())
	if os.Getenv(childEnv) == "command" {
		if _, err := l.Login(ctx); err != nil {
			fmt.Println("ERROR", err)
			return 3
		}
		fmt.Println("COMMAND")
		_, _ = l.Run(ctx, "sleep 600")
	} else {
		_, _ = l.Login(ctx)
	}
	time.Sleep(time.Hour) // the signal handler exits the process
	return 4
}

// 8. SIGINT and SIGTERM to a process running a lab, mid-boot and mid-command: the
// process exits 130/143, QEMU is reaped, the logs are flushed and metadata says
// interrupted. Broken on purpose by not calling lab.HandleSignals in the child: the
// process then dies with QEMU (parent-death signal) but metadata still says running.
func TestSignalsMidBootAndMidCommand(t *testing.T) {
	vmgate.VM(t)
	for _, tc := range []struct {
		role string
		sig  syscall.Signal
		code int
		wait string
	}{
		{"boot", syscall.SIGTERM, 143, "RUNDIR"},
		{"command", syscall.SIGINT, 130, "COMMAND"},
	} {
		t.Run(tc.role, func(t *testing.T) {
			notes := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+tc.role, "BOOTLAB_NOTES="+notes)
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			defer cmd.Process.Kill()
			lines := bufio.NewScanner(out)
			var dir string
			deadline := time.After(scaled(4 * time.Minute))
			got := make(chan string)
			go func() {
				for lines.Scan() {
					got <- lines.Text()
				}
				close(got)
			}()
		wait:
			for {
				select {
				case line, ok := <-got:
					require.True(t, ok, "the child ended before %s", tc.wait)
					if strings.HasPrefix(line, "RUNDIR ") {
						dir = strings.TrimPrefix(line, "RUNDIR ")
					}
					require.False(t, strings.HasPrefix(line, "ERROR"), line)
					if strings.HasPrefix(line, tc.wait) {
						break wait
					}
				case <-deadline:
					t.Fatalf("the child never reached %s", tc.wait)
				}
			}
			if tc.role == "command" {
				time.Sleep(time.Second) // the command is in flight
			}
			require.NoError(t, cmd.Process.Signal(tc.sig))
			signalled := time.Now()
			err = cmd.Wait()
			// Mid-command the stop once waited for the command's own 5-minute timeout
			// (the shell's lock; harness/shell TestStopQuestionsDoNotWaitForACommandInFlight).
			require.Less(t, time.Since(signalled), scaled(time.Minute), "the process ends soon after the signal, not when the command would have timed out")
			ee, ok := err.(*exec.ExitError)
			require.True(t, ok, "the child exited with a status, got %v", err)
			require.Equal(t, tc.code, ee.ExitCode())
			m := requireRecords(t, dir, runrec.Interrupted, "", "")
			require.Contains(t, m.Error, "interrupted by")
			_, err = os.Stat(dir + "/report.html")
			require.NoError(t, err, "the report was written on the way out")
		})
	}
}
