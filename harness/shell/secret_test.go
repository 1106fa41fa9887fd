package shell_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/ansi"
	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/shell"
)

// Issue 19 item 10: the login and sudo passwords reach the guest (it lets the login
// and sudo through only with them) but never transcript.log.
func TestPasswordsStayOutOfTheTranscript(t *testing.T) {
	const loginPW, sudoPW = "login-pw-7f3a", "sudo-pw-91c2"
	master, slave, err := console.OpenPTY()
	require.NoError(t, err)
	transcript := &fakeguest.Buffer{}
	con := console.New(master, console.Options{Normalizer: &ansi.Normalizer{}, AnswerDSR: true, Transcript: transcript})
	g := fakeguest.Start(slave, fakeguest.Behaviour{Login: "getty", Users: map[string]string{"user": loginPW}, SudoPassword: sudoPW}, func() { slave.Close() })
	t.Cleanup(func() {
		slave.Close()
		master.Close()
		<-con.Done()
		<-g.Done()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := shell.Profile{Name: "secret", LoginUser: "user", LoginPassword: loginPW, SudoPassword: sudoPW, Escalation: []shell.Method{shell.Sudo}}
	sh, err := shell.Login(ctx, con, p, fast())
	require.NoError(t, err)
	require.Equal(t, 0, sh.UID())
	log := transcript.String()
	require.NotContains(t, log, loginPW)
	require.NotContains(t, log, sudoPW)
	require.Contains(t, log, console.Redacted)
}
