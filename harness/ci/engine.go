package ci

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Engine runs container jobs with podman. Its configuration comes from
// .ci/container.sh (runc, cgroupfs, no default ulimits: what works on this
// kind of host), and the one image the workflows name, debian:12, is built
// there from Debian's archive rather than pulled.
type Engine struct {
	Repo  string // where .ci/container.sh is
	State string // where containers.conf is written
	Out   io.Writer
	conf  string
}

// NewEngine writes the engine's configuration and checks podman answers.
func NewEngine(ctx context.Context, repo, state string, out io.Writer) (*Engine, error) {
	e := &Engine{Repo: repo, State: state, Out: out}
	conf, err := e.script(ctx, "conf")
	if err != nil {
		return nil, err
	}
	e.conf = conf
	if _, err := e.podman(ctx, "version", "--format", "{{.Client.Version}}"); err != nil {
		return nil, fmt.Errorf("podman does not answer: %w", err)
	}
	return e, nil
}

func (e *Engine) script(ctx context.Context, cmd string) (string, error) {
	c := exec.CommandContext(ctx, "bash", e.Repo+"/.ci/container.sh", cmd, e.State)
	var stdout bytes.Buffer
	c.Stdout, c.Stderr = &stdout, e.Out
	if err := c.Run(); err != nil {
		return "", fmt.Errorf(".ci/container.sh %s: %w", cmd, err)
	}
	return strings.TrimSpace(stdout.String()), nil
}

func (e *Engine) podman(ctx context.Context, args ...string) (string, error) {
	c := exec.CommandContext(ctx, "podman", args...)
	c.Env = append(os.Environ(), "CONTAINERS_CONF="+e.conf)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return "", fmt.Errorf("podman %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// image returns the local name of the image a job names, building it the
// first time. Only debian:12 is known: any other image fails here, since
// pulling something else would not be the environment the job asks for.
func (e *Engine) image(name string) (string, error) {
	if name != "debian:12" {
		return "", fmt.Errorf("the workflow runner builds only debian:12 here, not %s", name)
	}
	local := "localhost/debian:12"
	if e.imageID(local) != "" {
		return local, nil
	}
	began := time.Now()
	fmt.Fprintf(e.Out, "== building %s from Debian's archive (once; then cached)\n", local)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if _, err := e.script(ctx, "image"); err != nil {
		return "", err
	}
	fmt.Fprintf(e.Out, "== built %s in %s\n", local, time.Since(began).Round(time.Second))
	return local, nil
}

// imageID is the image's id, "" when there is no such image.
func (e *Engine) imageID(name string) string {
	id, err := e.podman(context.Background(), "image", "inspect", "--format", "{{.Id}}", name)
	if err != nil {
		return ""
	}
	return id
}

// container is a running job container; steps run in it with podman exec.
type container struct {
	e    *Engine
	name string
}

// start runs image detached with the job's options and the mounts, as
// GitHub's runner does (a long sleep; each step is an exec).
func (e *Engine) start(ctx context.Context, name, image, options string, mounts []string, workdir string) (*container, error) {
	_, _ = e.podman(context.Background(), "rm", "-f", "-t", "0", name) // a leftover of a killed run
	// Options are plain flags (--privileged); quoting would need a shell parser.
	if strings.ContainsAny(options, `"'\$`) {
		return nil, fmt.Errorf("container options %q: the runner takes plain flags only", options)
	}
	opts := strings.Fields(options)
	args := []string{"run", "-d", "--name", name, "--workdir", workdir}
	for _, m := range mounts {
		args = append(args, "-v", m)
	}
	args = append(args, opts...)
	args = append(args, image, "sleep", "infinity")
	if _, err := e.podman(ctx, args...); err != nil {
		return nil, err
	}
	return &container{e: e, name: name}, nil
}

func (c *container) run(ctx context.Context, dir string, env []string, argv []string, out io.Writer) error {
	args := []string{"exec", "-w", dir}
	for _, kv := range env {
		args = append(args, "-e", kv)
	}
	args = append(args, c.name)
	args = append(args, argv...)
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+c.e.conf)
	cmd.Stdout, cmd.Stderr = out, out
	// On a timeout, the container goes (close); killing the exec client alone
	// would leave the step running inside.
	cmd.Cancel = func() error {
		_, _ = c.e.podman(context.Background(), "kill", c.name)
		return cmd.Process.Kill()
	}
	cmd.WaitDelay = 30 * time.Second
	return cmd.Run()
}

func (c *container) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.e.podman(ctx, "rm", "-f", "-t", "0", c.name); err != nil {
		fmt.Fprintf(c.e.Out, "removing the container %s: %v\n", c.name, err)
	}
}

func (e *Engine) commit(ctx context.Context, name, image string) error {
	_, err := e.podman(ctx, "commit", "-q", name, image)
	return err
}

// pruneSnapshots removes the other snapshots of the same job: only the
// current install steps' state is worth its disk.
func (e *Engine) pruneSnapshots(ctx context.Context, keep string) {
	repo, _, _ := strings.Cut(keep, ":")
	out, err := e.podman(ctx, "images", "--format", "{{.Repository}}:{{.Tag}}", repo)
	if err != nil {
		return
	}
	for _, img := range strings.Fields(out) {
		if img != keep {
			_, _ = e.podman(ctx, "rmi", img)
		}
	}
}
