package guard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// ServeOptions run the guard as the registry container's main process.
type ServeOptions struct {
	Options
	Listen string   // the Service port, e.g. ":5000"
	Argv   []string // distribution: ["registry", "serve", "/etc/distribution/config.yml"]; empty: the registry runs elsewhere
}

// Serve starts distribution (Argv) as a child, serves the guard on Listen, and returns when ctx
// ends (the child gets SIGTERM and is waited for) or when the child exits (then the container
// restarts both: a guard without its registry would only answer 503).
func Serve(ctx context.Context, o ServeOptions) error {
	// The registry's own garbage collection, with the same configuration as the server.
	if len(o.GCArgv) == 0 && len(o.Argv) == 3 && o.Argv[1] == "serve" {
		o.GCArgv = []string{o.Argv[0], "garbage-collect", o.Argv[2]}
	}
	g, err := New(o.Options)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	childDone := make(chan error, 1)
	var child *exec.Cmd
	if len(o.Argv) > 0 {
		child = exec.Command(o.Argv[0], o.Argv[1:]...)
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		dieWithParent(child)
		if err := child.Start(); err != nil {
			ln.Close()
			return fmt.Errorf("starting the registry %q: %w", o.Argv, err)
		}
		go func() { childDone <- child.Wait() }()
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 30 * time.Second}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	go g.Run(ctx)
	u := g.Usage()
	g.log.Info("guard serving", "listen", ln.Addr().String(), "upstream", o.Upstream, "used", u.Used, "bound", u.Bound,
		"usedHuman", Bytes(u.Used), "boundHuman", Bytes(u.Bound), "tags", u.Tags)

	var result error
	select {
	case <-ctx.Done():
	case err := <-childDone:
		child = nil
		result = fmt.Errorf("the registry exited: %v", err)
	case err := <-srvDone:
		result = err
	}
	// Stop at once, as distribution does without http.draintimeout: clients retry, and with a
	// ReadWriteOnce claim (Recreate) the next pod waits for this one to let go of the volume.
	_ = srv.Close()
	if child != nil {
		_ = child.Process.Signal(syscall.SIGTERM)
		select {
		case <-childDone:
		case <-time.After(25 * time.Second):
			_ = child.Process.Kill()
			<-childDone
		}
	}
	if errors.Is(result, http.ErrServerClosed) {
		result = nil
	}
	return result
}
