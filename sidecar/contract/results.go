package contract

import "time"

// Done is the content of the share's run/done.json: what the launcher records when the app ends,
// for the push sidecar (sidecar/marker).
type Done struct {
	RunID      string    `json:"runId"`
	ExitCode   int       `json:"exitCode"`         // the app's exit code; 128+n when killed by signal n
	Signal     string    `json:"signal,omitempty"` // e.g. "killed" when the app died of a signal
	Outputs    []string  `json:"outputs"`          // names under the share's outputs/ directory
	Error      string    `json:"error,omitempty"`  // what went wrong in the launcher itself (missing output...)
	FinishedAt time.Time `json:"finishedAt"`
}

// Failed reports whether the run must not be pushed (unless push-on-failure).
func (d Done) Failed() bool { return d.ExitCode != 0 || d.Error != "" }

// PushResult is what one push did.
type PushResult struct {
	Reference     string `json:"reference"`
	Digest        string `json:"digest"`
	Size          int64  `json:"size"` // sum of the layer sizes
	Files         int    `json:"files"`
	UploadedBytes int64  `json:"uploadedBytes"` // blob bytes actually sent (0 when the registry had them all)
	DurationMs    int64  `json:"durationMs"`
}

// Termination is the push container's JSON termination message, read by whoever runs the pod
// (kubectl, a workflow engine, the e2e tests).
type Termination struct {
	// Reference is known before the push, so failures report it too; it shadows
	// PushResult.Reference, which is the same reference once pushed.
	Reference string `json:"reference,omitempty"`
	// PushResult is set only by a successful push; nil leaves its fields out.
	*PushResult
	ExitCode *int   `json:"exitCode,omitempty"`
	RunID    string `json:"runId,omitempty"`
	Pod      string `json:"pod,omitempty"`
	Skipped  string `json:"skipped,omitempty"`
	Error    string `json:"error,omitempty"`
}
