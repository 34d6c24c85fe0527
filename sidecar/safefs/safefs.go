// Package safefs decides whether a symlink stays inside its tree, following every link of the
// tree the way the kernel would — dangling links and chains included — instead of looking at the
// target's text alone. The unpacker (init) and the launcher (placing inputs) refuse a link that
// leaves its tree, since the tree is copied elsewhere (input-path) where the same text resolves
// against other directories.
package safefs

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// maxHops bounds the links followed while resolving one path (Linux stops at 40).
const maxHops = 40

// ErrEscapes is wrapped by LinkStaysInside's refusals.
var ErrEscapes = errors.New("symlink leaves its tree")

// Readlink reports the target of the symlink at rel (a slash path relative to the tree's root),
// and false when rel is not a symlink (a directory, a file, or nothing yet).
type Readlink func(rel string) (target string, isLink bool, err error)

// LinkStaysInside resolves the symlink at rel (relative to the tree's root, never the root itself)
// with target as its text, following every link readlink knows, and returns an error wrapping
// ErrEscapes when any step leaves the tree: an absolute target, a ".." above the root, or a
// chain of more than 40 links. Missing components are taken as directories, so a dangling link is
// judged by where it would lead once its target exists.
func LinkStaysInside(rel, target string, readlink Readlink) error {
	rel = path.Clean(rel)
	if rel == "." || rel == "" || strings.HasPrefix(rel, "../") || rel == ".." || path.IsAbs(rel) {
		return fmt.Errorf("%w: %q is not inside the tree", ErrEscapes, rel)
	}
	var cur []string // resolved components, none of them a symlink
	if d := path.Dir(rel); d != "." {
		cur = strings.Split(d, "/")
	}
	if path.IsAbs(target) || target == "" {
		return fmt.Errorf("%w: %q points to the absolute or empty %q", ErrEscapes, rel, target)
	}
	queue := strings.Split(target, "/")
	for hops := 1; len(queue) > 0; {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return fmt.Errorf("%w: %q -> %q resolves above the tree", ErrEscapes, rel, target)
			}
			cur = cur[:len(cur)-1]
			continue
		}
		t, isLink, err := readlink(strings.Join(append(cur, c), "/"))
		if err != nil {
			return err
		}
		if !isLink {
			cur = append(cur, c)
			continue
		}
		if hops++; hops > maxHops {
			return fmt.Errorf("%w: %q -> %q goes through more than %d links", ErrEscapes, rel, target, maxHops)
		}
		if path.IsAbs(t) || t == "" {
			return fmt.Errorf("%w: %q -> %q goes through a link to the absolute or empty %q", ErrEscapes, rel, target, t)
		}
		// The link's target is relative to its directory (cur); what followed it comes after.
		queue = append(strings.Split(t, "/"), queue...)
	}
	return nil
}
