package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/tests/go/registrytest"
)

// Issue 9, item 1, through the real processes: init and push name full references on a FAKE
// hostile registry (401 Basic, then 401 Bearer with a token realm; it records every Authorization
// header) while the pod holds the cache's credentials. The password never reaches it.
func TestCacheCredentialsNeverReachAnotherHost(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	for _, challenge := range []string{registrytest.ChallengeBasic, registrytest.ChallengeBearer} {
		t.Run(challenge, func(t *testing.T) {
			hostile := registrytest.StartHostile(t, challenge)
			env := append(registryEnv(reg), "ORAS_CACHE_PLAIN_HTTP_REGISTRIES="+hostile.Host, "ORAS_CACHE_TIMEOUT=20s")
			share := filepath.Join(t.TempDir(), "oras-cache")
			init := startProc(t, env, "", "init", "--share", share, "--input", hostile.Host+"/org/data:v1")
			if code := init.wait(t, 60*time.Second); code != exitFailed {
				t.Fatalf("init exit %d:\n%s", code, init.stderr.String())
			}
			term := filepath.Join(t.TempDir(), "term")
			push := startProc(t, env, "", "push", "--share", share, "--output", hostile.Host+"/org/out:v1", "--termination-log", term)
			app := startProc(t, os.Environ(), t.TempDir(), "launch", "--share", share, "--output-path", "out", "--",
				"sh", "-c", "mkdir out && echo result > out/r")
			if code := app.wait(t, 30*time.Second); code != 0 {
				t.Fatalf("launch exit %d:\n%s", code, app.stderr.String())
			}
			if code := push.wait(t, 60*time.Second); code != exitFailed {
				t.Fatalf("push exit %d:\n%s", code, push.stderr.String())
			}
			if hostile.Requests() < 2 {
				t.Fatalf("the hostile registry saw %d requests: this test would prove nothing", hostile.Requests())
			}
			for _, a := range hostile.Authorizations() {
				if strings.Contains(a, reg.Password) || strings.HasPrefix(a, "Basic ") {
					t.Errorf("the hostile registry received %q", a)
				}
			}
		})
	}
}
