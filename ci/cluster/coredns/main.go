// Command coredns is CoreDNS with only the plugins the local test cluster needs (ci/cluster/cluster.sh).
// Upstream's plugin list (core/plugin, core/dnsserver/zdirectives.go) is generated and pulls
// in every cloud SDK; here the directive order is our own short list, in upstream's relative
// order, and only those plugin packages are linked. There is deliberately no `forward`: the
// cluster answers its own names, `template` answers NXDOMAIN for every other name, and nothing
// is sent off the machine.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// directives must follow upstream's execution order (core/dnsserver/zdirectives.go).
var directives = []string{
	"bind",
	"ready",
	"health",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"template",
	"kubernetes",
	"whoami",
}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
