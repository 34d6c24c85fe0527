package contract

// The sidecar's environment: the webhook sets the first five in every injected container (from
// the chart's registry settings and the registry/oras-env annotations); the others are for
// hand-written pods and the chart's test hook (sidecar/transfer reads them all).
const (
	EnvRegistry  = "ORAS_CACHE_REGISTRY"   // host[:port] of the cache, used for relative references
	EnvPlainHTTP = "ORAS_CACHE_PLAIN_HTTP" // "true": the cache (ORAS_CACHE_REGISTRY) over plain HTTP (default); "false": HTTPS
	// EnvPlainHTTPRegistries lists other hosts (comma-separated host[:port]) read over plain HTTP;
	// every host not listed (and the cache unless ORAS_CACHE_PLAIN_HTTP) is HTTPS.
	EnvPlainHTTPRegistries = "ORAS_CACHE_PLAIN_HTTP_REGISTRIES"
	EnvUsername            = "ORAS_CACHE_USERNAME"           // user for ORAS_CACHE_REGISTRY only (optional)
	EnvPassword            = "ORAS_CACHE_PASSWORD"           // password for ORAS_CACHE_REGISTRY only (optional, never logged)
	EnvTimeout             = "ORAS_CACHE_TIMEOUT"            // total deadline of one pull or push, retries included (Go duration)
	EnvCAFile              = "ORAS_CACHE_CA_FILE"            // PEM CA bundle for HTTPS registries (optional)
	EnvCompressionLevel    = "ORAS_CACHE_COMPRESSION_LEVEL"  // gzip level of directory layers, 1..9 (default 1)
	EnvMaxUnpackSize       = "ORAS_CACHE_MAX_UNPACK_SIZE"    // bound on the bytes one input may unpack to, hard links in full (default 64Gi)
	EnvMaxUnpackEntries    = "ORAS_CACHE_MAX_UNPACK_ENTRIES" // bound on the tar entries of one input (default 1000000)
)
