// Package transfer holds the sidecar's transfer settings, read from the ORAS_CACHE_* environment
// variables (sidecar/contract) that the webhook injects (docs/design.md, "What the mutation does", item 6).
package transfer

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/contract"
)

// Defaults.
const (
	DefaultTimeout          = 30 * time.Minute
	DefaultCompressionLevel = 1
	DefaultMaxUnpackSize    = int64(64) << 30
	DefaultMaxUnpackEntries = 1_000_000
)

// Config is everything a transfer needs.
type Config struct {
	Registry  string
	PlainHTTP bool // for RegistryHost only
	// PlainHTTPRegistries are the other host[:port] values read over plain HTTP.
	PlainHTTPRegistries []string
	Username            string
	Password            string
	Timeout             time.Duration
	CAFile              string
	CompressionLevel    int
	MaxUnpackSize       int64
	MaxUnpackEntries    int
}

// String never prints the password.
func (c Config) String() string {
	auth := "none"
	if c.Username != "" {
		auth = "basic(" + c.Username + ")"
	}
	return fmt.Sprintf("registry=%s plainHTTP=%t plainHTTPRegistries=%q auth=%s timeout=%s ca=%q level=%d maxUnpack=%d maxEntries=%d",
		c.Registry, c.PlainHTTP, c.PlainHTTPRegistries, auth, c.Timeout, c.CAFile, c.CompressionLevel, c.MaxUnpackSize, c.MaxUnpackEntries)
}

// RegistryHost is the host[:port] of the cache (Registry may carry a path prefix): the only host
// that receives the credentials.
func (c Config) RegistryHost() string {
	host, _, _ := strings.Cut(c.Registry, "/")
	return host
}

// PlainHTTPFor reports whether host (host[:port]) is read over plain HTTP: the cache when
// PlainHTTP is set, and the hosts listed in PlainHTTPRegistries. Every other host is HTTPS, so a
// reference naming a foreign registry is never read or written in clear text by accident.
func (c Config) PlainHTTPFor(host string) bool {
	if c.PlainHTTP && host != "" && host == c.RegistryHost() {
		return true
	}
	return slices.Contains(c.PlainHTTPRegistries, host)
}

// Default returns the defaults (plain HTTP, no auth, 30m).
func Default() Config {
	return Config{PlainHTTP: true, Timeout: DefaultTimeout, CompressionLevel: DefaultCompressionLevel, MaxUnpackSize: DefaultMaxUnpackSize, MaxUnpackEntries: DefaultMaxUnpackEntries}
}

// FromEnv reads the ORAS_CACHE_* variables with getenv (os.Getenv when nil).
func FromEnv(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Default()
	c.Registry = strings.TrimSpace(getenv(contract.EnvRegistry))
	if v := strings.TrimSpace(getenv(contract.EnvPlainHTTP)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("%s=%q: want true or false", contract.EnvPlainHTTP, v)
		}
		c.PlainHTTP = b
	}
	for _, h := range strings.Split(getenv(contract.EnvPlainHTTPRegistries), ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if strings.ContainsAny(h, "/@ ") || strings.Contains(h, "://") {
			return c, fmt.Errorf("%s: %q is not a host[:port] (no scheme, path or user)", contract.EnvPlainHTTPRegistries, h)
		}
		c.PlainHTTPRegistries = append(c.PlainHTTPRegistries, h)
	}
	c.Username = getenv(contract.EnvUsername)
	c.Password = getenv(contract.EnvPassword)
	if (c.Username == "") != (c.Password == "") {
		return c, fmt.Errorf("%s and %s must be set together", contract.EnvUsername, contract.EnvPassword)
	}
	if v := strings.TrimSpace(getenv(contract.EnvTimeout)); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("%s=%q: want a positive Go duration such as 30m", contract.EnvTimeout, v)
		}
		c.Timeout = d
	}
	c.CAFile = strings.TrimSpace(getenv(contract.EnvCAFile))
	if v := strings.TrimSpace(getenv(contract.EnvCompressionLevel)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 9 {
			return c, fmt.Errorf("%s=%q: want 1..9", contract.EnvCompressionLevel, v)
		}
		c.CompressionLevel = n
	}
	var err error
	if c.MaxUnpackSize, c.MaxUnpackEntries, err = UnpackLimits(getenv); err != nil {
		return c, err
	}
	return c, nil
}

// UnpackLimits reads ORAS_CACHE_MAX_UNPACK_SIZE and ORAS_CACHE_MAX_UNPACK_ENTRIES (defaults when
// unset): init bounds what it unpacks with them, the launcher what it places.
func UnpackLimits(getenv func(string) string) (size int64, entries int, err error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	size, entries = DefaultMaxUnpackSize, DefaultMaxUnpackEntries
	if v := strings.TrimSpace(getenv(contract.EnvMaxUnpackSize)); v != "" {
		n, err := ParseSize(v)
		if err != nil {
			return 0, 0, fmt.Errorf("%s=%q: %v", contract.EnvMaxUnpackSize, v, err)
		}
		size = n
	}
	if v := strings.TrimSpace(getenv(contract.EnvMaxUnpackEntries)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return 0, 0, fmt.Errorf("%s=%q: want a positive number of entries such as 1000000", contract.EnvMaxUnpackEntries, v)
		}
		entries = n
	}
	return size, entries, nil
}

// ParseSize reads a byte count: a plain integer or one with a Ki/Mi/Gi/Ti (or K/M/G/T, powers of 1000) suffix.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive size such as 10Gi")
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size too large")
	}
	return n * mult, nil
}
