package transfer

import (
	"strings"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/contract"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnvDefaults(t *testing.T) {
	c, err := FromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !c.PlainHTTP || c.Timeout != DefaultTimeout || c.CompressionLevel != 1 || c.MaxUnpackSize != DefaultMaxUnpackSize || c.Username != "" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestFromEnv(t *testing.T) {
	c, err := FromEnv(env(map[string]string{
		contract.EnvRegistry: "cache.ns.svc:5000", contract.EnvPlainHTTP: "false", contract.EnvUsername: "u", contract.EnvPassword: "s3cret",
		contract.EnvTimeout: "90s", contract.EnvCAFile: "/ca.pem", contract.EnvCompressionLevel: "6", contract.EnvMaxUnpackSize: "2Gi",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Registry != "cache.ns.svc:5000" || c.PlainHTTP || c.Timeout != 90*time.Second || c.CAFile != "/ca.pem" ||
		c.CompressionLevel != 6 || c.MaxUnpackSize != 2<<30 || c.Password != "s3cret" {
		t.Fatalf("%+v", c)
	}
	if strings.Contains(c.String(), "s3cret") {
		t.Fatal("String() shows the password")
	}
}

func TestFromEnvRejects(t *testing.T) {
	for _, m := range []map[string]string{
		{contract.EnvPlainHTTP: "maybe"},
		{contract.EnvTimeout: "forever"},
		{contract.EnvTimeout: "-1s"},
		{contract.EnvUsername: "only-user"},
		{contract.EnvCompressionLevel: "0"},
		{contract.EnvMaxUnpackSize: "lots"},
	} {
		if _, err := FromEnv(env(m)); err == nil {
			t.Errorf("%v accepted", m)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"10": 10, "1Ki": 1024, "3Mi": 3 << 20, "2G": 2e9, "1Ti": 1 << 40} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v", in, got, err)
		}
	}
}

func TestPlainHTTPRegistriesEnvRejectsNonHosts(t *testing.T) {
	for _, v := range []string{"http://a:5000", "a/b", "user@a"} {
		_, err := FromEnv(func(k string) string {
			if k == contract.EnvPlainHTTPRegistries {
				return v
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), contract.EnvPlainHTTPRegistries) || !strings.Contains(err.Error(), v) {
			t.Errorf("%q: %v", v, err)
		}
	}
}
