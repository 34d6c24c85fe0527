package safefs

import (
	"errors"
	"testing"
)

func TestLinkStaysInside(t *testing.T) {
	links := map[string]string{
		"a/b/c/up": "../../..", // resolves to the root of the tree
		"loop1":    "loop2",
		"loop2":    "loop1",
		"d/self":   ".",
	}
	readlink := func(rel string) (string, bool, error) {
		t, ok := links[rel]
		return t, ok, nil
	}
	for _, c := range []struct {
		rel, target string
		escapes     bool
	}{
		{"a/b/c/up", "../../..", false},
		{"p", "a/b/c/up/../../secret", true}, // lexically a/b/secret: the chain from the issue
		{"p", "a/b/c/up/a/b/c/up/f", false},
		{"p", "a/../../x", true},
		{"p", "/etc/passwd", true},
		{"p", "", true},
		{"a/q", "../a/b", false},
		{"a/q", "../../x", true},
		{"p", "missing/dir/../../f", false},
		{"p", "missing/../../f", true},
		{"p", "loop1", true},
		{"d/x", "self/self/self/../f", false},
		{"d/x", "self/self/self/../../f", true},
		{".", "x", true},
		{"../p", "x", true},
	} {
		err := LinkStaysInside(c.rel, c.target, readlink)
		if got := err != nil; got != c.escapes || (err != nil && !errors.Is(err, ErrEscapes)) {
			t.Errorf("%s -> %s: %v, want escapes=%t", c.rel, c.target, err, c.escapes)
		}
	}
}
