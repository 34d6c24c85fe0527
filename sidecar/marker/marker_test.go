package marker

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/contract"
)

// TestMain lets the test binary act as a launcher process that a test kills.
func TestMain(m *testing.M) {
	if dir := os.Getenv("MARKER_TEST_BEGIN"); dir != "" {
		r, err := Begin(dir)
		if err != nil {
			os.Exit(3)
		}
		_ = os.WriteFile(filepath.Join(dir, "helper-ready"), []byte(r.ID), 0o644)
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func waitAsync(dir string, opts WaitOptions) (chan contract.Done, chan error) {
	dc, ec := make(chan contract.Done, 1), make(chan error, 1)
	go func() {
		d, err := Wait(dir, opts, nil)
		dc <- d
		ec <- err
	}()
	return dc, ec
}

func TestResultHandedOver(t *testing.T) {
	dir := t.TempDir()
	r, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	running := make(chan string, 1)
	dc, ec := waitAsync(dir, WaitOptions{Poll: 10 * time.Millisecond, OnRunning: func(id string) { running <- id }})
	if id := <-running; id != r.ID {
		t.Fatalf("running run id %q, want %q", id, r.ID)
	}
	select {
	case <-ec:
		t.Fatal("Wait returned while the launcher holds the lock")
	case <-time.After(100 * time.Millisecond):
	}
	if err := r.Finish(contract.Done{ExitCode: 42, Outputs: []string{"out"}}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	d, err := <-dc, <-ec
	if err != nil || d.RunID != r.ID || d.ExitCode != 42 || d.Outputs[0] != "out" || !d.Failed() {
		t.Fatalf("got %+v, %v", d, err)
	}
}

func TestLauncherGoneWithoutResult(t *testing.T) {
	dir := t.TempDir()
	r, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // dies without Finish
	start := time.Now()
	_, err = Wait(dir, WaitOptions{Poll: 10 * time.Millisecond}, nil)
	if !errors.Is(err, ErrNoResult) || time.Since(start) > time.Second {
		t.Fatalf("want ErrNoResult at once, got %v after %s", err, time.Since(start))
	}
}

// A launcher process killed with SIGKILL (as by the OOM killer) is noticed within a poll or two.
func TestKilledLauncherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MARKER_TEST_BEGIN="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "helper-ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("helper never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	dc, ec := waitAsync(dir, WaitOptions{})
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-ec:
		t.Fatalf("Wait returned while the launcher lives: %v", err)
	default:
	}
	killed := time.Now()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	select {
	case err := <-ec:
		<-dc
		if !errors.Is(err, ErrNoResult) {
			t.Fatalf("want ErrNoResult, got %v", err)
		}
		if took := time.Since(killed); took > 2*time.Second {
			t.Fatalf("noticed after %s", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not notice the dead launcher within 5s")
	}
}

func TestNeverStarted(t *testing.T) {
	start := time.Now()
	_, err := Wait(t.TempDir(), WaitOptions{Poll: 10 * time.Millisecond, StartTimeout: 200 * time.Millisecond}, nil)
	if !errors.Is(err, ErrNeverStarted) || time.Since(start) > 2*time.Second {
		t.Fatalf("got %v after %s", err, time.Since(start))
	}
}

// A result already handled (a restarted push container) is ignored: Wait waits for a new run.
func TestHandledRunIsNotActedOnAgain(t *testing.T) {
	dir := t.TempDir()
	r1, _ := Begin(dir)
	_ = r1.Finish(contract.Done{ExitCode: 1})
	r1.Close()
	if err := MarkHandled(dir, r1.ID); err != nil {
		t.Fatal(err)
	}
	_, err := Wait(dir, WaitOptions{Poll: 10 * time.Millisecond, StartTimeout: 200 * time.Millisecond}, nil)
	if !errors.Is(err, ErrNeverStarted) {
		t.Fatalf("a handled run was acted on again: %v", err)
	}
	dc, ec := waitAsync(dir, WaitOptions{Poll: 10 * time.Millisecond, StartTimeout: 5 * time.Second})
	time.Sleep(50 * time.Millisecond)
	r2, _ := Begin(dir) // the app container restarted
	if _, err := os.Stat(filepath.Join(dir, DoneFile)); !os.IsNotExist(err) {
		t.Fatal("Begin kept the done marker of an earlier run")
	}
	_ = r2.Finish(contract.Done{ExitCode: 0, Outputs: []string{"o"}})
	r2.Close()
	d, err := <-dc, <-ec
	if err != nil || d.RunID != r2.ID || d.Failed() {
		t.Fatalf("got %+v %v", d, err)
	}
}

// A done.json of another run (left by an earlier container) never counts for the current one.
func TestStaleDoneFromEarlierRun(t *testing.T) {
	dir := t.TempDir()
	r, _ := Begin(dir)
	if err := WriteJSON(filepath.Join(dir, DoneFile), contract.Done{RunID: "earlier-run", ExitCode: 0}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	_, err := Wait(dir, WaitOptions{Poll: 10 * time.Millisecond}, nil)
	if !errors.Is(err, ErrNoResult) || !strings.Contains(err.Error(), r.ID) {
		t.Fatalf("got %v", err)
	}
}

func TestWaitStops(t *testing.T) {
	stop := make(chan struct{})
	close(stop)
	if _, err := Wait(t.TempDir(), WaitOptions{}, stop); err == nil {
		t.Fatal("Wait ignored stop")
	}
}

func TestRunIDsAndOutputNamesFromTheShareAreChecked(t *testing.T) {
	if id := NewRunID(); !ValidRunID(id) {
		t.Fatalf("NewRunID made %q, which ValidRunID refuses", id)
	}
	for _, id := range []string{"", "../../x", "0123456789ABCDEF01234567", "0123456789abcdef0123456", "0123456789abcdef01234567/"} {
		if ValidRunID(id) {
			t.Errorf("ValidRunID(%q)", id)
		}
	}
	dir := t.TempDir()
	if err := MarkHandled(dir, "../escape"); err == nil {
		t.Fatal("MarkHandled accepted a path as run id")
	}
	for _, o := range []string{"", ".", "..", "a/b", "../x", "x\x00", strings.Repeat("n", 256)} {
		if CheckOutputName(o) == nil {
			t.Errorf("CheckOutputName(%q) accepted", o)
		}
	}
	for _, o := range []string{"results", "out.txt", "..x", "a b"} {
		if err := CheckOutputName(o); err != nil {
			t.Errorf("CheckOutputName(%q): %v", o, err)
		}
	}
}
