package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
)

// termination is the JSON termination message of the push container (< 4 KiB).
type termination struct {
	// Reference is known before the push, so failures report it too; it shadows
	// PushResult.Reference, which is the same reference once pushed.
	Reference string `json:"reference,omitempty"`
	// PushResult is set only by a successful push; nil leaves its fields out.
	*artifact.PushResult
	ExitCode *int   `json:"exitCode,omitempty"`
	RunID    string `json:"runId,omitempty"`
	Pod      string `json:"pod,omitempty"`
	Skipped  string `json:"skipped,omitempty"`
	Error    string `json:"error,omitempty"`
}

const maxTermination = 4000

func writeTermination(path string, t termination, log *slog.Logger) {
	b, _ := json.Marshal(t)
	for len(b) > maxTermination {
		// Shorten the longest free-text field on a rune boundary until the message fits.
		field := &t.Error
		if len(t.Skipped) > len(*field) {
			field = &t.Skipped
		}
		if len(t.Reference) > len(*field) {
			field = &t.Reference
		}
		keep := len(*field) - (len(b) - maxTermination) - 3
		if keep < 0 {
			keep = 0
		}
		*field = strings.ToValidUTF8((*field)[:keep], "") + "..."
		b, _ = json.Marshal(t)
	}
	fmt.Println(string(b))
	if path == "" {
		return
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		log.Warn("cannot write the termination message", "path", path, "error", err.Error())
	}
}
