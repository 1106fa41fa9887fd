package shell_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/frame"
	"github.com/bootlab/bootlab/harness/shell"
)

func TestDbgQuirks(t *testing.T) {
	r := start(t, fakeguest.Behaviour{Login: "getty", KernelNoise: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	_, err := shell.Login(ctx, r.con, shell.Mini, fast())
	text, _, _ := r.con.Read(0)
	fmt.Printf("ERR %v\nTEXT %q\n", err != nil, text)
	p := frame.NewParser("x")
	_ = p
}
