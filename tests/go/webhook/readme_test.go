package webhook

import (
	"os"
	"strings"
	"testing"

	"github.com/converged-computing/oras-cache/webhook/inject"
)

// TestWebhookReadmeAnnotations: the contract table of the README lists every annotation constant.
func TestWebhookReadmeAnnotations(t *testing.T) {
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range inject.KnownAnnotations {
		short := strings.TrimPrefix(k, inject.Prefix)
		if !strings.Contains(string(b), "| `"+short+"` |") {
			t.Errorf("README.md does not document %s in its annotation table", short)
		}
	}
}
