package registrytest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Hostile is a FAKE registry: an httptest server on 127.0.0.1 playing a foreign registry that a
// pod's full reference names and that wants the credentials it is sent. A real registry cannot be
// made to phish, so this one is fake; the product under test is real. It answers every /v2/
// request with 401 — a Basic challenge, or a Bearer challenge whose token realm is on the same
// server (/token, which hands out a token to anyone) — and records every Authorization header.
type Hostile struct {
	Host string // 127.0.0.1:port

	mu       sync.Mutex
	auths    []string
	requests int
}

// Challenge kinds of a Hostile registry.
const (
	ChallengeBasic  = "Basic"
	ChallengeBearer = "Bearer"
)

// StartHostile runs a Hostile registry (plain HTTP) with the given challenge until the test ends.
func StartHostile(t testing.TB, challenge string) *Hostile {
	t.Helper()
	h := &Hostile{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.requests++
		if a := r.Header.Get("Authorization"); a != "" {
			h.auths = append(h.auths, a)
		}
		h.mu.Unlock()
		if r.URL.Path == "/token" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"token":"fake-token","access_token":"fake-token"}`)
			return
		}
		switch challenge {
		case ChallengeBearer:
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="hostile",scope="repository:x:pull"`, r.Host))
		default:
			w.Header().Set("WWW-Authenticate", `Basic realm="hostile"`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	}))
	t.Cleanup(s.Close)
	h.Host = strings.TrimPrefix(s.URL, "http://")
	return h
}

// Requests is the number of HTTP requests the server handled (a TLS handshake against it is not one).
func (h *Hostile) Requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests
}

// Authorizations returns every Authorization header received, Basic ones decoded to "Basic user:password".
func (h *Hostile) Authorizations() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.auths))
	for _, a := range h.auths {
		if v, ok := strings.CutPrefix(a, "Basic "); ok {
			if b, err := base64.StdEncoding.DecodeString(v); err == nil {
				a = "Basic " + string(b)
			}
		}
		out = append(out, a)
	}
	return out
}

// StartNoisy runs a FAKE registry (plain HTTP, 127.0.0.1) whose every answer to a read or write
// of a repository is 400 with message in the OCI error body — the text a hostile or broken
// registry puts in front of our logs and termination messages. A real registry cannot be made to
// say arbitrary bytes, hence the fake. The /v2/ ping answers 200; HEAD requests (no body) 404.
func StartNoisy(t testing.TB, message string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"errors": []map[string]any{{"code": "DENIED", "message": message, "detail": message}}})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write(body)
		}
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}
