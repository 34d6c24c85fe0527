// Package marker is the hand-over between the launcher (app container) and the push sidecar
// through the shared volume's run/ directory (docs/design.md, "Markers").
//
// The launcher holds an exclusive flock on run/launcher.lock for as long as it lives: it writes
// the lock file (holding its run id) under a temporary name, locks it and renames it into place,
// so whenever launcher.lock exists it is locked unless its launcher is gone. The kernel drops the
// lock when the launcher dies for any reason (OOM kill included). Before releasing it, the
// launcher writes run/done.json atomically. The push side polls: once it can lock launcher.lock
// itself, the launcher is gone, and done.json either carries the same run id (a result) or not
// (the app container ended without recording a result).
package marker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/contract"
)

// File names in the run directory.
const (
	LockFile     = "launcher.lock"
	LaunchFile   = "launcher.json"
	DoneFile     = "done.json"
	handledGlob  = "handled-"
	DefaultPoll  = 100 * time.Millisecond
	DefaultStart = 2 * time.Minute
)

// Launch is the content of launcher.lock and launcher.json.
type Launch struct {
	RunID     string    `json:"runId"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"startedAt"`
}

// Run is the launcher's side of one run.
type Run struct {
	dir  string
	lock *os.File
	ID   string
}

// runIDBytes is the size of a run id's random part (hex-encoded: 24 characters).
const runIDBytes = 12

// NewRunID returns a random run identifier.
func NewRunID() string {
	b := make([]byte, runIDBytes)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Begin starts a run in dir: takes the lock (see the package comment), writes launcher.json and
// removes a done.json left by an earlier run. The lock is held until Close or process exit.
func Begin(dir string) (*Run, error) {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, err
	}
	r := &Run{dir: dir, ID: NewRunID()}
	l := Launch{RunID: r.ID, PID: os.Getpid(), StartedAt: time.Now().UTC()}
	b, _ := json.Marshal(l)
	f, err := os.CreateTemp(dir, ".launcher.lock-*")
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("flock: %w", err)
	}
	_ = f.Chmod(0o644)
	if err := os.Rename(f.Name(), filepath.Join(dir, LockFile)); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	r.lock = f
	if err := os.Remove(filepath.Join(dir, DoneFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return r, err
	}
	if err := WriteJSON(filepath.Join(dir, LaunchFile), l); err != nil {
		return r, err
	}
	return r, nil
}

// Finish writes done.json (with this run's id) atomically.
func (r *Run) Finish(d contract.Done) error {
	d.RunID = r.ID
	if d.FinishedAt.IsZero() {
		d.FinishedAt = time.Now().UTC()
	}
	if d.Outputs == nil {
		d.Outputs = []string{}
	}
	return WriteJSON(filepath.Join(r.dir, DoneFile), d)
}

// Close releases the lock.
func (r *Run) Close() error {
	if r.lock == nil {
		return nil
	}
	err := r.lock.Close()
	r.lock = nil
	return err
}

// WriteJSON writes v to p atomically (temp file in the same directory, fsync, rename), readable by all.
func WriteJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+"-*")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// ErrNoResult: the launcher is gone and left no result for its run.
var ErrNoResult = errors.New("the app container ended without recording a result (killed? out of memory?)")

// ErrNeverStarted: no launcher took the lock within the start timeout.
var ErrNeverStarted = errors.New("no launcher started in the app container")

// WaitOptions tune Wait.
type WaitOptions struct {
	Poll         time.Duration // default 100ms
	StartTimeout time.Duration // how long to wait for a launcher to appear (default 2m)
	// OnRunning is called once when a running launcher is first seen.
	OnRunning func(runID string)
}

// Wait blocks until the launcher of a run that was not handled yet (see MarkHandled) is gone and
// returns its result, ErrNoResult if it left none, or ErrNeverStarted when no new launcher
// appears within StartTimeout. It never waits forever for a dead launcher.
func Wait(dir string, opts WaitOptions, stop <-chan struct{}) (contract.Done, error) {
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStart
	}
	lastRunning := time.Now() // or the start of the wait
	seen := ""
	t := time.NewTicker(opts.Poll)
	defer t.Stop()
	for {
		state, launch, err := probe(dir)
		if err != nil {
			return contract.Done{}, err
		}
		if state != absent && !ValidRunID(launch.RunID) {
			return contract.Done{}, fmt.Errorf("%s holds the run id %q, not one a launcher makes (%d lowercase hex digits): the share was altered; nothing is pushed",
				LockFile, shorten(launch.RunID), runIDBytes*2)
		}
		switch state {
		case running:
			if seen != launch.RunID && opts.OnRunning != nil {
				opts.OnRunning(launch.RunID)
			}
			seen = launch.RunID
			lastRunning = time.Now()
		case gone:
			if !Handled(dir, launch.RunID) {
				var d contract.Done
				b, err := os.ReadFile(filepath.Join(dir, DoneFile))
				if err == nil && json.Unmarshal(b, &d) == nil && d.RunID == launch.RunID {
					for _, o := range d.Outputs {
						if err := CheckOutputName(o); err != nil {
							return contract.Done{RunID: d.RunID, ExitCode: d.ExitCode}, fmt.Errorf("%s names the output %q: %v; only a name inside the share's outputs/ is pushed", DoneFile, shorten(o), err)
						}
					}
					return d, nil
				}
				return contract.Done{RunID: launch.RunID}, fmt.Errorf("run %s: %w", launch.RunID, ErrNoResult)
			}
			fallthrough
		default: // absent, or only a run that was handled already
			if time.Since(lastRunning) > opts.StartTimeout {
				return contract.Done{}, fmt.Errorf("%w within %s (did its command fail to start?)", ErrNeverStarted, opts.StartTimeout)
			}
		}
		select {
		case <-stop:
			return contract.Done{}, errors.New("stopped while waiting for the app")
		case <-t.C:
		}
	}
}

type lockState int

const (
	absent lockState = iota
	running
	gone
)

// probe looks at launcher.lock: absent, running (locked by a live launcher) or gone.
func probe(dir string) (lockState, Launch, error) {
	p := filepath.Join(dir, LockFile)
	for attempt := 0; attempt < 5; attempt++ {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			return absent, Launch{}, nil
		}
		if err != nil {
			return absent, Launch{}, err
		}
		var l Launch
		b := make([]byte, 4096)
		n, _ := f.Read(b)
		_ = json.Unmarshal(b[:n], &l)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return running, l, nil
		}
		if err != nil {
			f.Close()
			return absent, Launch{}, fmt.Errorf("flock %s: %w", p, err)
		}
		// Make sure the file we locked is still the one in place (not replaced by a new launcher).
		var a, b2 syscall.Stat_t
		ferr := syscall.Fstat(int(f.Fd()), &a)
		serr := syscall.Stat(p, &b2)
		f.Close()
		if ferr == nil && serr == nil && a.Ino == b2.Ino && a.Dev == b2.Dev {
			return gone, l, nil
		}
	}
	return running, Launch{}, nil
}

// MarkHandled records that the push side acted on runID, so a restarted push container waits for
// a new run instead of acting on the same result again.
func MarkHandled(dir, runID string) error {
	if !ValidRunID(runID) {
		return fmt.Errorf("not a run id: %q", shorten(runID))
	}
	return os.WriteFile(filepath.Join(dir, handledGlob+runID), nil, 0o644)
}

// Handled reports whether MarkHandled was called for runID.
func Handled(dir, runID string) bool {
	if !ValidRunID(runID) {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, handledGlob+runID))
	return err == nil
}

// ValidRunID reports whether id is what NewRunID makes (lowercase hex of runIDBytes). The share is
// writable by the app, so an id read back from it is checked before it names a file.
func ValidRunID(id string) bool {
	if len(id) != runIDBytes*2 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// CheckOutputName refuses an output that is not a single name inside outputs/: empty, ".", "..",
// or holding a separator or NUL (done.json is in the app-writable share).
func CheckOutputName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return errors.New("not a name")
	case strings.ContainsAny(name, "/\x00"):
		return errors.New("not a single name (holds a separator)")
	case len(name) > 255:
		return errors.New("longer than a file name can be")
	}
	return nil
}

// shorten bounds a value read from the share before it is quoted in a message.
func shorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
