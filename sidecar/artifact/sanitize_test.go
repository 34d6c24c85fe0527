package artifact

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"oras.land/oras-go/v2/registry/remote/errcode"
)

func TestSafeText(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                     "plain",
		"a\nb\r\nc":                 "a b  c",
		"\x1b[31mred\x1b[0m":        " [31mred [0m",
		"nul\x00tab\tdel\x7f":       "nul tab del ",
		"bad \xff utf8":             "bad   utf8",
		"line\u2028separator\u0085": "line separator ",
	} {
		if got := SafeText(in, 100); got != want {
			t.Errorf("SafeText(%q) = %q, want %q", in, got, want)
		}
	}
	long := SafeText(strings.Repeat("é", 100), 51)
	if len(long) > 51 || !strings.HasSuffix(long, "...") || !utf8.ValidString(long) {
		t.Errorf("bounded: %q (%d bytes)", long, len(long))
	}
}

// A cleaned error keeps what retry decisions look at.
func TestCleanKeepsTheErrorChain(t *testing.T) {
	er := &errcode.ErrorResponse{Method: "GET", StatusCode: http.StatusServiceUnavailable,
		Errors: errcode.Errors{{Code: "UNAVAILABLE", Message: "try\nagain"}}}
	err := clean(er)
	var got *errcode.ErrorResponse
	if strings.Contains(err.Error(), "\n") || !errors.As(err, &got) || !Retryable(err) {
		t.Fatalf("%q: As=%t Retryable=%t", err, errors.As(err, &got), Retryable(err))
	}
}

// A 507's message is text from the registry too: one clean, bounded line.
func TestCacheFullMessageIsClean(t *testing.T) {
	err := &errcode.ErrorResponse{StatusCode: http.StatusInsufficientStorage,
		Errors: errcode.Errors{{Code: "DENIED", Message: "cache full: 1 of 2 used;\nforged line\x1b[31m" + strings.Repeat("x", 5000)}}}
	msg, full := CacheFull(err)
	if !full || strings.ContainsAny(msg, "\n\x1b") || len(msg) > MaxErrorText || !strings.HasPrefix(msg, "cache full: 1 of 2 used; forged line") {
		t.Fatalf("CacheFull = %q, %v", msg, full)
	}
	if _, full := CacheFull(&errcode.ErrorResponse{StatusCode: http.StatusInternalServerError}); full {
		t.Fatal("a 500 is not a full cache")
	}
	if Retryable(err) {
		t.Fatal("a full cache is retried")
	}
}
