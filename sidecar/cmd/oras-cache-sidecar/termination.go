package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/contract"
)

// maxTermination keeps the message under the kubelet's 4096-byte limit.
const maxTermination = 4000

func writeTermination(path string, t contract.Termination, log *slog.Logger) {
	// Free text may come from a registry's answer or from the app-writable share: no control
	// characters, no extra lines (the JSON encoding would keep them for whoever prints the field).
	for _, f := range []*string{&t.Error, &t.Skipped, &t.Reference} {
		*f = artifact.SafeText(*f, maxTermination)
	}
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
