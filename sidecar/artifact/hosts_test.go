package artifact

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/registrytest"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

// configFromEnv builds the config the way the sidecar does, from the ORAS_CACHE_* environment.
func configFromEnv(t *testing.T, env map[string]string) transfer.Config {
	t.Helper()
	cfg, err := transfer.FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The cache's credentials go to the cache host only. A full reference naming another registry —
// here a FAKE hostile one on 127.0.0.1 that answers 401 with a Basic or a Bearer (token realm)
// challenge and records every Authorization header — is pulled and pushed without them.
func TestCredentialsGoOnlyToTheCacheHost(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	dir := filepath.Join(t.TempDir(), "data")
	writeTree(t, dir, map[string]string{"f": "payload"}, nil)
	ctx := context.Background()
	for _, challenge := range []string{registrytest.ChallengeBasic, registrytest.ChallengeBearer} {
		t.Run(challenge, func(t *testing.T) {
			hostile := registrytest.StartHostile(t, challenge)
			c, _ := newTestClient(t, configFromEnv(t, map[string]string{
				contract.EnvRegistry: reg.Host, contract.EnvPlainHTTP: "true",
				contract.EnvUsername: reg.Username, contract.EnvPassword: reg.Password,
				contract.EnvPlainHTTPRegistries: hostile.Host, contract.EnvTimeout: "20s",
			}))
			// The cache itself still gets them (relative and full references).
			if _, err := c.Push(ctx, "creds/ok:v1", []string{dir}, PushOptions{}); err != nil {
				t.Fatalf("push to the cache: %v", err)
			}
			if _, err := c.Pull(ctx, reg.Host+"/creds/ok:v1", filepath.Join(t.TempDir(), "in"), PullOptions{}); err != nil {
				t.Fatalf("pull from the cache: %v", err)
			}
			if _, err := c.Pull(ctx, hostile.Host+"/org/data:v1", filepath.Join(t.TempDir(), "in"), PullOptions{}); err == nil {
				t.Fatal("pull from the hostile registry succeeded")
			}
			if _, err := c.Push(ctx, hostile.Host+"/org/out:v1", []string{dir}, PushOptions{}); err == nil {
				t.Fatal("push to the hostile registry succeeded")
			}
			if hostile.Requests() == 0 {
				t.Fatal("the hostile registry was never contacted: this test would prove nothing")
			}
			for _, a := range hostile.Authorizations() {
				if strings.Contains(a, reg.Password) || strings.HasPrefix(a, "Basic ") {
					t.Errorf("the hostile registry received %q", a)
				}
			}
		})
	}
}

// Plain HTTP is for the cache (ORAS_CACHE_PLAIN_HTTP) and the listed hosts only: a foreign host is
// spoken to over HTTPS, so a plain-HTTP one is never sent a request (a clear, immediate error
// instead); once listed, a second real registry is used over plain HTTP without credentials.
func TestPlainHTTPOnlyForTheCacheAndListedHosts(t *testing.T) {
	cache := registrytest.Start(t, registrytest.Options{Auth: true})
	other := registrytest.Start(t, registrytest.Options{})
	hostile := registrytest.StartHostile(t, registrytest.ChallengeBasic)
	env := map[string]string{
		contract.EnvRegistry: cache.Host, contract.EnvPlainHTTP: "true",
		contract.EnvUsername: cache.Username, contract.EnvPassword: cache.Password, contract.EnvTimeout: "20s",
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	writeTree(t, dir, map[string]string{"f": "payload"}, nil)

	c, _ := newTestClient(t, configFromEnv(t, env))
	start := time.Now()
	_, err := c.Pull(ctx, hostile.Host+"/org/data:v1", filepath.Join(t.TempDir(), "in"), PullOptions{})
	if err == nil || hostile.Requests() != 0 {
		t.Fatalf("an unlisted host was spoken to over plain HTTP (%d requests): %v", hostile.Requests(), err)
	}
	if !strings.Contains(err.Error(), contract.EnvPlainHTTPRegistries) || time.Since(start) > 10*time.Second {
		t.Fatalf("want an immediate error naming %s, got %v after %s", contract.EnvPlainHTTPRegistries, err, time.Since(start))
	}
	if _, err := c.Push(ctx, other.Host+"/org/out:v1", []string{dir}, PushOptions{}); err == nil {
		t.Fatal("push to an unlisted plain-HTTP registry succeeded")
	}

	env[contract.EnvPlainHTTPRegistries] = " " + hostile.Host + ", " + other.Host + " "
	listed, _ := newTestClient(t, configFromEnv(t, env))
	if _, err := listed.Push(ctx, other.Host+"/org/out:v1", []string{dir}, PushOptions{}); err != nil {
		t.Fatalf("push to a listed registry: %v", err)
	}
	if _, err := listed.Pull(ctx, other.Host+"/org/out:v1", filepath.Join(t.TempDir(), "in"), PullOptions{}); err != nil {
		t.Fatalf("pull from a listed registry: %v", err)
	}

	// The cache over HTTPS (ORAS_CACHE_PLAIN_HTTP=false) is not spoken to in plain HTTP either.
	env[contract.EnvPlainHTTP] = "false"
	env[contract.EnvPlainHTTPRegistries] = ""
	tlsOnly, _ := newTestClient(t, configFromEnv(t, env))
	if _, err := tlsOnly.Pull(ctx, "org/out:v1", filepath.Join(t.TempDir(), "in"), PullOptions{}); err == nil {
		t.Fatal("the cache was read over plain HTTP with ORAS_CACHE_PLAIN_HTTP=false")
	}
}
