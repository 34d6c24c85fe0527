package main

// Per-step overhead on the local cluster (optional, last): only when .work/cluster/kubeconfig
// exists and the API server answers; otherwise the report says why it was skipped.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

type clusterCase struct {
	Name        string  `json:"name"`
	PlainSecs   float64 `json:"plainSecs"`
	InjectSecs  float64 `json:"injectSecs"`
	TransferSec float64 `json:"transferSecs"`
	Note        string  `json:"note,omitempty"`
	Breakdown   string  `json:"breakdown,omitempty"` // when each container of the injected pod ran
}

type clusterResult struct {
	Skipped string        `json:"skipped,omitempty"`
	Failed  string        `json:"failed,omitempty"` // a run that broke off (cases measured so far are kept)
	Cases   []clusterCase `json:"cases,omitempty"`
}

func clusterUp(repo string) (string, string) {
	kc := filepath.Join(repo, ".work", "cluster", "kubeconfig")
	if _, err := os.Stat(kc); err != nil {
		return "", "no .work/cluster/kubeconfig (the local cluster is not up: `make up`)"
	}
	kubectl, err := tool(repo, "kubectl")
	if err != nil {
		return "", err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", kc, "get", "--raw", "/readyz").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		return "", "the local cluster does not answer (`kubectl get --raw /readyz`: " + strings.TrimSpace(lastLines(string(out), 1)) + ")"
	}
	return kc, ""
}

func runCluster(repo, work string, logf func(string, ...any)) clusterResult {
	kc, why := clusterUp(repo)
	if kc == "" {
		logf("cluster: skipped: %s", why)
		return clusterResult{Skipped: why}
	}
	return runClusterCases(repo, work, kc, logf)
}

// clusterExtra is the cluster part run again on its own.
type clusterExtra struct {
	Started time.Time     `json:"started"`
	Load    string        `json:"load"`
	Result  clusterResult `json:"result"`
}
