package imageconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"syscall"
	"time"
)

// The lookup talks to the registry a pod names, and that registry may send it elsewhere (a
// redirect, a token realm). Those second hops are where a hostile registry turns the webhook into
// a scanner of its own node and cluster: so a request that is not to the registry itself may not
// go to a loopback, link-local or unspecified address, and no hop may downgrade HTTPS to HTTP or
// use HTTP towards a host the chart does not list.

// errRefused marks a request the policy refused (kept out of denials, logged).
var errRefused = errors.New("refused by the lookup's network policy")

type lookupKey struct{}

// lookup is what the transport knows about the lookup a request belongs to.
type lookup struct {
	// registry is host:port of the registry the pod named (default port filled in)
	registry string
}

func withLookup(ctx context.Context, registryHostPort string) context.Context {
	return context.WithValue(ctx, lookupKey{}, &lookup{registry: registryHostPort})
}

type secondHopKey struct{}

// guard is the RoundTripper of the lookup's HTTP client.
type guard struct {
	base      http.RoundTripper
	plainHTTP []string
	resolver  *net.Resolver
}

// hostPort is u's host with its default port (so "reg" and "reg:443" compare equal).
func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "http" {
		return net.JoinHostPort(host, "80")
	}
	return net.JoinHostPort(host, "443")
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	l, _ := req.Context().Value(lookupKey{}).(*lookup)
	if l == nil {
		return g.base.RoundTrip(req)
	}
	target := hostPort(req.URL.Scheme, req.URL.Host)
	redirect := req.Response != nil
	if req.URL.Scheme != "https" {
		if redirect && req.Response.Request != nil && req.Response.Request.URL.Scheme == "https" {
			return nil, fmt.Errorf("%w: redirect from HTTPS to HTTP (%s)", errRefused, req.URL.Host)
		}
		if !slices.Contains(g.plainHTTP, req.URL.Host) {
			return nil, fmt.Errorf("%w: plain HTTP to %s, which is not listed in plainHTTPRegistries", errRefused, req.URL.Host)
		}
	}
	if target == l.registry {
		return g.base.RoundTrip(req)
	}
	// a second hop: check the addresses now and again when dialling (a name may re-resolve)
	host := req.URL.Hostname()
	if err := g.checkHost(req.Context(), host); err != nil {
		return nil, err
	}
	return g.base.RoundTrip(req.WithContext(context.WithValue(req.Context(), secondHopKey{}, true)))
}

func (g *guard) checkHost(ctx context.Context, host string) error {
	if ip, err := netip.ParseAddr(host); err == nil {
		return checkAddr(host, ip)
	}
	addrs, err := g.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := checkAddr(host, a); err != nil {
			return err
		}
	}
	return nil
}

func checkAddr(host string, ip netip.Addr) error {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() {
		return fmt.Errorf("%w: %s is a loopback, link-local or unspecified address (%s)", errRefused, host, ip)
	}
	return nil
}

// newTransport is the default transport: the system's, with the second-hop check at dial time.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ctx.Value(secondHopKey{}) == nil {
			return d.DialContext(ctx, network, addr)
		}
		dd := *d
		dd.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			return checkAddr(address, ap.Addr())
		}
		return dd.DialContext(ctx, network, addr)
	}
	return t
}
