package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"os"
	"path"
	"regexp"
	"strings"
	"time"
)

// Config is the guard's file (guard.json). The chart renders it into a ConfigMap of its own that
// is not part of the registry pod template, so `helm upgrade` changes the bound (and retention)
// of a running cache without replacing its pod — with an emptyDir, a new pod is an empty cache.
// The guard re-reads the file while it runs.
type Config struct {
	// Bound is the most the cache may hold (a Kubernetes quantity); "" means the volume's size
	// less the headroom.
	Bound string `json:"bound"`
	// VolumeSize is the size the volume is known to have: the emptyDir sizeLimit or the claim's
	// request; "" means the filesystem's size (statfs), e.g. for an existing claim.
	VolumeSize string `json:"volumeSize"`
	// Volume names the kind of volume in messages: "emptyDir" or "persistentVolumeClaim".
	Volume string `json:"volume"`
	// Retention decides which tags a collection deletes.
	Retention Retention `json:"retention"`
}

// Retention rules, applied per repository by each collection. A tag is kept when any rule that
// is set keeps it: it is among the KeepLast newest of its repository, or younger than MaxAge.
// With neither set, nothing is deleted (a collection only reclaims unreferenced blobs).
// A tag's age is the time it was last pushed (its link file's mtime in the registry storage).
type Retention struct {
	KeepLast int      `json:"keepLast"`
	MaxAge   string   `json:"maxAge"`  // Go duration; "" = no age rule
	Exclude  []string `json:"exclude"` // repository globs (path.Match) never touched
}

func (r Retention) maxAge() (time.Duration, error) {
	if r.MaxAge == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r.MaxAge)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("retention.maxAge=%q: want a positive Go duration such as 168h", r.MaxAge)
	}
	return d, nil
}

// Check validates the retention rules.
func (r Retention) Check() error {
	if r.KeepLast < 0 {
		return fmt.Errorf("retention.keepLast=%d: want 0 (no count rule) or more", r.KeepLast)
	}
	if _, err := r.maxAge(); err != nil {
		return err
	}
	for _, e := range r.Exclude {
		if _, err := path.Match(e, "x"); err != nil {
			return fmt.Errorf("retention.exclude %q: %v", e, err)
		}
	}
	return nil
}

// ReadConfig reads and checks a config file.
func ReadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Headroom rule: a tenth of the volume, at least MinHeadroom, always stays free below the volume's
// own limit. It absorbs what byte accounting cannot see before the kubelet does — filesystem
// blocks and directories, the registry's link files, upload sessions a client abandoned (kept
// until the registry purges them), bytes written between two walks — so the emptyDir's sizeLimit
// is never reached and the kubelet never evicts the registry.
const MinHeadroom = 8 << 20

// Limits are the numbers the guard enforces.
type Limits struct {
	Bound  int64 // bytes the cache may hold
	Volume int64 // size of the volume (0: unknown)
}

// boundValue and volumeValue name the chart values in messages.
const boundValue = "registry.capacity.bound"

func volumeValue(kind string) string {
	if kind == "persistentVolumeClaim" {
		return "registry.persistence.size"
	}
	return "registry.emptyDirSizeLimit"
}

// MaxBound is the largest bound a volume of this size allows.
func MaxBound(volume int64) int64 {
	return volume - max(volume/10, MinHeadroom)
}

// Limits computes the bound from the config and the filesystem's size (statfs; 0 if unknown).
func (c Config) Limits(fsSize int64) (Limits, error) {
	var l Limits
	if c.VolumeSize != "" {
		v, err := ParseQuantity(c.VolumeSize)
		if err != nil {
			return l, fmt.Errorf("%s=%q: %v", volumeValue(c.Volume), c.VolumeSize, err)
		}
		l.Volume = v
	}
	// A claim's volume may be smaller than requested or shared; an emptyDir shares the node's disk.
	if fsSize > 0 && (l.Volume == 0 || fsSize < l.Volume) {
		l.Volume = fsSize
	}
	if l.Volume <= 0 {
		return l, fmt.Errorf("the size of the cache volume is unknown: set %s", volumeValue(c.Volume))
	}
	maxBound := MaxBound(l.Volume)
	if maxBound <= 0 {
		return l, fmt.Errorf("the cache volume (%s) is too small: %s must be above %s", Bytes(l.Volume), volumeValue(c.Volume), Bytes(2*MinHeadroom))
	}
	if err := c.Retention.Check(); err != nil {
		return l, err
	}
	if c.Bound == "" {
		l.Bound = maxBound
		return l, nil
	}
	b, err := ParseQuantity(c.Bound)
	if err != nil {
		return l, fmt.Errorf("%s=%q: %v", boundValue, c.Bound, err)
	}
	if b > maxBound {
		return l, fmt.Errorf("%s=%s is above %s, the most a volume of %s allows (a tenth, at least %s, stays free so the kubelet never evicts the registry): lower %s or raise %s",
			boundValue, c.Bound, Bytes(maxBound), Bytes(l.Volume), Bytes(MinHeadroom), boundValue, volumeValue(c.Volume))
	}
	l.Bound = b
	return l, nil
}

var quantityRe = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$`)

// ParseQuantity reads a Kubernetes quantity of bytes as the chart's schema allows it
// (decimal number, binary or decimal suffix), rounding a fraction of a byte up.
func ParseQuantity(s string) (int64, error) {
	m := quantityRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("want a quantity such as 10Gi or 500M")
	}
	mult := map[string]int64{"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
		"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}[m[2]]
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("want a quantity such as 10Gi or 500M")
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if new(big.Rat).SetInt(n).Cmp(r) < 0 {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() || n.Int64() > math.MaxInt64/2 {
		return 0, fmt.Errorf("quantity too large")
	}
	return n.Int64(), nil
}

// Bytes formats a byte count for people (binary units, one decimal).
func Bytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%dB", n)
	}
	f, i := float64(n), 0
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	for f /= unit; (f >= unit || f <= -unit) && i < len(units)-1; i++ {
		f /= unit
	}
	return fmt.Sprintf("%.1f%s", f, units[i])
}

// FetchUsage reads a guard's usage from http://host/-/oras-cache/usage; ok is false when host is
// no guard (another registry).
func FetchUsage(ctx context.Context, host string) (u Usage, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+UsagePath, nil)
	if err != nil {
		return u, false, err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return u, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return u, false, nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&u); err != nil {
		return u, false, err
	}
	return u, true, nil
}

// String is the one line `helm test` and the logs show.
func (u Usage) String() string {
	s := fmt.Sprintf("cache usage: %s of %s used (%s free; volume %s), %d repositories, %d tags, %d writes refused as full",
		Bytes(u.Used), Bytes(u.Bound), Bytes(u.Free), Bytes(u.Volume), u.Repositories, u.Tags, u.RejectedWrites)
	if u.ConfigError != "" {
		s += "; capacity config refused: " + u.ConfigError
	}
	return s
}
