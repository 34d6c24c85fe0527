package tests

import (
	"os"
	"strings"
	"testing"

	"github.com/converged-computing/oras-cache/webhook/inject"
)

// TestWebhookReadmeAnnotations: the annotation table of webhook/README.md lists every constant.
func TestWebhookReadmeAnnotations(t *testing.T) {
	b, err := os.ReadFile("../../webhook/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range inject.KnownAnnotations {
		short := strings.TrimPrefix(k, inject.Prefix)
		if !strings.Contains(string(b), "| `"+short+"` |") {
			t.Errorf("webhook/README.md does not document %s", short)
		}
	}
}
