package inject

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/converged-computing/oras-cache/sidecar/contract"
)

// Reference is an artifact reference from an annotation.
type Reference struct {
	// Annotation is the key it was written in (input-uri, input-uri_<n> or output-uri), named by
	// any denial about it.
	Annotation string
	// Raw is the reference as written, $(VAR) included; it is passed to the sidecar unchanged
	// (the kubelet expands the variables).
	Raw string
	// Host is host[:port] for a full reference, "" for a reference relative to the cache (or to
	// the registry annotation).
	Host       string
	Repository string
	Tag        string
	Digest     string
	// Vars are the $(VAR) names used, in order of appearance, without duplicates.
	Vars []string
}

var (
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE           = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestRE        = regexp.MustCompile(`^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)
	domainRE        = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
	ipv6RE          = regexp.MustCompile(`^\[[0-9A-Fa-f:.]+\]$`)
)

// varPlaceholder replaces $(VAR) while checking the syntax: valid in a path component and a tag.
const varPlaceholder = "0"

// findVars returns the $(VAR) names in s and s with each replaced by repl. "$$" is the
// kubelet's escape of "$"; it is kept as is (and left for the caller to judge).
func findVars(s, repl string) (vars []string, replaced string, err error) {
	var b strings.Builder
	b.Grow(len(s))
	var seen map[string]bool // a set, so many variables cost linear time
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteString("$$")
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				return nil, "", fmt.Errorf("%q has $( without a closing )", s)
			}
			name := s[i+2 : i+2+end]
			if err := validateVarName(name); err != nil {
				return nil, "", err
			}
			if !seen[name] {
				if seen == nil {
					seen = map[string]bool{}
				}
				seen[name] = true
				vars = append(vars, name)
			}
			b.WriteString(repl)
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return vars, b.String(), nil
}

func validateVarName(name string) error {
	if name == "" {
		return errors.New("$() names no variable")
	}
	for _, r := range name {
		if r < '!' || r > '~' || strings.ContainsRune("=$()@/:", r) {
			return fmt.Errorf("$(%s) is not a valid environment variable name", name)
		}
	}
	return nil
}

// ParseReference parses an artifact reference: "repo:tag", "repo@sha256:…", "repo:tag@sha256:…"
// relative to the cache, or "host[:port]/repo…" (contract.SplitHost decides). $(VAR) may appear in the repository and the tag.
func ParseReference(s string) (Reference, error) {
	ref := Reference{Raw: s}
	if s == "" {
		return ref, errors.New("empty reference")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r > '~' {
			return ref, fmt.Errorf("%q contains a space, a control or a non-ASCII character", s)
		}
	}
	if strings.Contains(s, "://") {
		return ref, fmt.Errorf("%q has a URL scheme; write host[:port]/repository:tag without it", s)
	}
	vars, plain, err := findVars(s, varPlaceholder)
	if err != nil {
		return ref, err
	}
	if strings.Contains(plain, "$") {
		return ref, fmt.Errorf("%q contains '$' outside of a $(VAR) reference", s)
	}
	ref.Vars = vars
	// The host is decided on the text as written, so a variable can never become a host.
	name, rawName := plain, s
	if i := strings.IndexByte(rawName, '@'); i >= 0 {
		rawName = rawName[:i]
	}
	if i := strings.IndexByte(plain, '@'); i >= 0 {
		name, ref.Digest = plain[:i], plain[i+1:]
		if !digestRE.MatchString(ref.Digest) || strings.Contains(s[strings.IndexByte(s, '@')+1:], "$(") {
			return ref, fmt.Errorf("%q: digest %q is not sha256:<64 hex> (or sha512:<128 hex>)", s, ref.Digest)
		}
	}
	if first, _ := contract.SplitHost(rawName); first != "" {
		if strings.Contains(first, "$(") {
			return ref, fmt.Errorf("%q: $(VAR) is not allowed in the registry host", s)
		}
		ref.Host = first
		name = name[len(first)+1:]
		if err := validateHost(first); err != nil {
			return ref, fmt.Errorf("%q: %v", s, err)
		}
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name, ref.Tag = name[:i], name[i+1:]
		if !tagRE.MatchString(ref.Tag) {
			return ref, fmt.Errorf("%q: tag %q is invalid (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')", s, ref.Tag)
		}
	}
	if name == "" {
		return ref, fmt.Errorf("%q has no repository name", s)
	}
	for _, c := range strings.Split(name, "/") {
		if !pathComponentRE.MatchString(c) {
			if strings.ToLower(c) != c {
				return ref, fmt.Errorf("%q: repository names must be lowercase", s)
			}
			return ref, fmt.Errorf("%q: repository component %q is invalid (lowercase letters and digits separated by '.', '_', '__' or '-')", s, c)
		}
	}
	if len(name) > 255 {
		return ref, fmt.Errorf("%q: repository name longer than 255 characters", s)
	}
	ref.Repository, ref.Tag = splitAsWritten(s, ref)
	return ref, nil
}

// splitAsWritten returns the repository and the tag as written (variables kept).
func splitAsWritten(s string, ref Reference) (repo, tag string) {
	r := s
	if ref.Host != "" {
		r = r[len(ref.Host)+1:]
	}
	if i := strings.IndexByte(r, '@'); i >= 0 {
		r = r[:i]
	}
	if ref.Tag != "" {
		// cut at the last ':' outside $( )
		depth := 0
		for i := len(r) - 1; i >= 0; i-- {
			switch r[i] {
			case ')':
				depth++
			case '(':
				depth--
			case ':':
				if depth == 0 {
					return r[:i], r[i+1:]
				}
			}
		}
	}
	return r, ""
}

// validateHost checks host[:port] (a DNS name, an IPv4 address or [IPv6]).
func validateHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if strings.Contains(h, "://") || strings.Contains(h, "/") {
		return fmt.Errorf("%q must be host[:port] without scheme or path", h)
	}
	host, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return fmt.Errorf("%q: unclosed [", h)
		}
		host, port = h[:end+1], strings.TrimPrefix(h[end+1:], ":")
		if !ipv6RE.MatchString(host) {
			return fmt.Errorf("%q: invalid IPv6 address", h)
		}
		if len(h) > end+1 && h[end+1] != ':' {
			return fmt.Errorf("%q: junk after ]", h)
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
		if !domainRE.MatchString(host) {
			return fmt.Errorf("%q: invalid host name %q", h, host)
		}
	} else if !domainRE.MatchString(host) {
		return fmt.Errorf("%q: invalid host name", h)
	}
	if port != "" || strings.HasSuffix(h, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return fmt.Errorf("%q: port %q is not 1-65535", h, port)
		}
	}
	return nil
}

// validateImage checks a container image reference (the sidecar image or the oras-container
// annotation): [host[:port]/]repo[:tag][@digest], no variables.
func validateImage(s string) error {
	if strings.Contains(s, "$") {
		return fmt.Errorf("%q: variables are not allowed in an image", s)
	}
	if _, err := ParseReference(s); err != nil {
		return err
	}
	return nil
}
