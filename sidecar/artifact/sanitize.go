package artifact

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxErrorText bounds the text of an error that carries a remote response: it ends in logs, in
// the init container's termination message (its last log lines) and in the push container's.
const MaxErrorText = 1024

// SafeText makes text from elsewhere (a registry's error body, the share) safe for one log line or
// a termination message: invalid UTF-8 and every control character — newlines, carriage returns,
// escape sequences, NUL — become a space (so a registry cannot forge extra lines or colour a
// terminal), and the result is cut to max bytes on a rune boundary, marked with "...".
func SafeText(s string, max int) string {
	s = strings.ToValidUTF8(s, " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	cut := max - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// cleanError shows a sanitized message and keeps the original for errors.Is/As (retry decisions).
type cleanError struct {
	msg string
	err error
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.err }

// clean returns err with its message made safe (SafeText, MaxErrorText).
func clean(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if safe := SafeText(msg, MaxErrorText); safe != msg {
		return &cleanError{msg: safe, err: err}
	}
	return err
}
