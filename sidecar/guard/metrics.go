package guard

import (
	"fmt"
	"net/http"
	"strings"
)

// serveMetrics writes the Prometheus text format by hand: a dozen gauges and counters do not
// justify the client library in the static binary that every annotated pod copies.
func (g *Guard) serveMetrics(w http.ResponseWriter) {
	u := g.Usage()
	var b strings.Builder
	metric := func(name, typ, help string, v int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, typ, name, v)
	}
	metric("oras_cache_storage_used_bytes", "gauge", "Bytes the cache holds on its volume (last walk plus writes since, plus writes in flight).", u.Used)
	metric("oras_cache_storage_bound_bytes", "gauge", "Bytes the cache may hold (registry.capacity.bound); writes past it are refused with 507.", u.Bound)
	metric("oras_cache_storage_free_bytes", "gauge", "Bytes that can still be written before the bound.", u.Free)
	metric("oras_cache_storage_volume_bytes", "gauge", "Size of the cache volume (emptyDir sizeLimit, claim size or filesystem size).", u.Volume)
	metric("oras_cache_storage_filesystem_available_bytes", "gauge", "Bytes available on the volume's filesystem (statfs).", u.FilesystemFree)
	metric("oras_cache_repositories", "gauge", "Repositories in the cache (last walk).", int64(u.Repositories))
	metric("oras_cache_tags", "gauge", "Tags in the cache (last walk).", int64(u.Tags))
	metric("oras_cache_manifests", "gauge", "Manifests in the cache, tagged or not (last walk).", int64(u.Manifests))
	metric("oras_cache_blobs", "gauge", "Blobs in the cache (last walk).", int64(u.Blobs))
	metric("oras_cache_rejected_writes_total", "counter", "Writes refused with 507 because the cache was full.", u.RejectedWrites)
	metric("oras_cache_written_bytes_total", "counter", "Bytes of blob and manifest writes passed to the registry.", u.WrittenBytes)
	metric("oras_cache_collections_total", "counter", "Retention and garbage collection runs that completed.", u.Collections)
	metric("oras_cache_reclaimed_bytes_total", "counter", "Bytes freed by collections.", u.ReclaimedBytes)
	metric("oras_cache_retention_deleted_tags_total", "counter", "Tags deleted by the retention rules.", u.DeletedTags)
	metric("oras_cache_read_only_seconds_total", "counter", "Time the cache refused writes (503, retried by clients) for garbage collection.", u.ReadOnlyMs/1000)
	cfgErr := int64(0)
	if u.ConfigError != "" {
		cfgErr = 1
	}
	metric("oras_cache_config_error", "gauge", "1 when the last capacity config was refused (the previous one stays in force; see the log).", cfgErr)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}
