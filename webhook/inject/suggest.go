package inject

import "strings"

// levenshtein is the edit distance between a and b (insertions, deletions, substitutions).
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// suggestAnnotation returns the known annotation nearest to key (a full key under Prefix), or
// "" when none is close enough to be a plausible typo.
func suggestAnnotation(key string) string {
	name := strings.ToLower(strings.TrimPrefix(key, Prefix))
	name = strings.ReplaceAll(name, "_", "-")
	if strings.HasPrefix(name, "input-uri-") || strings.HasPrefix(name, "inputuri") {
		return AnnotationInputURIListPrefix + "<n>"
	}
	best, bestDist := "", -1
	for _, known := range KnownAnnotations {
		k := strings.TrimPrefix(known, Prefix)
		if strings.Contains(k, "<n>") {
			continue
		}
		d := levenshtein(name, k)
		if bestDist < 0 || d < bestDist {
			best, bestDist = known, d
		}
	}
	// a typo: at most a third of the key changed (and at least one edit allowed)
	if bestDist >= 0 && bestDist <= max(1, len(name)/3) {
		return best
	}
	return ""
}
