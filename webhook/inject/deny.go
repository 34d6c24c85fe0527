package inject

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Denial is one reason to refuse a pod. Message names the annotation (when there is one) and
// says what to change.
type Denial struct {
	// Annotation is the full annotation key at fault, "" for a pod-level problem.
	Annotation string
	// Reason is a short stable label (used in metrics).
	Reason string
	// Message is what the user reads.
	Message string
}

func (d *Denial) Error() string {
	if d.Annotation == "" {
		return d.Message
	}
	return d.Annotation + ": " + d.Message
}

// Denial reasons (metric label values).
const (
	ReasonUnknownAnnotation = "unknown-annotation"
	ReasonMissingCache      = "missing-oras-cache"
	ReasonEmptyValue        = "empty-value"
	ReasonInvalidReference  = "invalid-reference"
	ReasonInvalidPath       = "invalid-path"
	ReasonInvalidValue      = "invalid-value"
	ReasonMissingPair       = "missing-companion"
	ReasonContainer         = "container"
	ReasonDuplicateInput    = "duplicate-input"
	ReasonUndefinedVar      = "undefined-variable"
	ReasonImageOverride     = "image-override-not-allowed"
	ReasonReservedName      = "reserved-name"
	ReasonEntrypointLookup  = "entrypoint-lookup"
	ReasonNothingToDo       = "nothing-to-do"
	ReasonStatus            = "status"
	ReasonRestartPolicy     = "restart-policy"
	ReasonTooLarge          = "too-many-annotations"
	ReasonMore              = "more-not-shown"
)

// Bounds on what a denial echoes back, so its size does not grow with the pod.
const (
	// MaxDenials is how many problems one denial lists; the rest are counted.
	MaxDenials = 10
	// MaxDenialLen bounds one problem's text (values are echoed, quoted, and cut here).
	MaxDenialLen = 600
)

// deny records a problem with the annotation key ("" for the pod itself).
func (p *parser) deny(key, reason, format string, args ...any) {
	if len(p.denials) >= MaxDenials {
		p.dropped++
		return
	}
	p.denials = append(p.denials, &Denial{Annotation: key, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// denied is the result refusing the pod: the denials, with a last one counting those not shown.
func (p *parser) denied() *Result {
	if p.dropped > 0 {
		return &Result{Denials: append(p.denials, &Denial{Reason: ReasonMore, Message: fmt.Sprintf("and %d more problems not shown", p.dropped)})}
	}
	return &Result{Denials: p.denials}
}

// Message joins the denials into what the user reads (and the webhook logs): at most
// MaxDenials problems of at most MaxDenialLen bytes each, so its size is bounded whatever the pod.
func (r *Result) Message() string {
	var b strings.Builder
	b.WriteString("oras-cache: ")
	for i, d := range r.Denials {
		if i == MaxDenials+1 { // the parser's "more not shown" is the one past MaxDenials
			fmt.Fprintf(&b, "; and %d more problems not shown", len(r.Denials)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(truncate(d.Error(), MaxDenialLen))
	}
	return b.String()
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…(cut)"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
