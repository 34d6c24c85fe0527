package chart

// webhook.clientAuth and networkPolicy.webhookFrom rendered: the CA reaches the file the webhook's
// config names (from the caBundle value or a Secret), and the admission port's NetworkPolicy
// takes the peers. The server side is TestWebhookHTTPSClientAuth.

import (
	"encoding/base64"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/converged-computing/oras-cache/webhook/inject"

	"github.com/converged-computing/oras-cache/tests/go/testkit"
)

func TestChartWebhookClientAuth(t *testing.T) {
	const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	bundle := base64.StdEncoding.EncodeToString([]byte(pem))
	for name, tc := range map[string]struct {
		sets   []string
		secret string
	}{
		"caBundle": {sets: []string{"webhook.clientAuth.enabled=true", "webhook.clientAuth.caBundle=" + bundle}},
		"caSecret": {sets: []string{"webhook.clientAuth.enabled=true", "webhook.clientAuth.caSecret=apiserver-ca"}, secret: "apiserver-ca"},
		"off":      {},
	} {
		t.Run(name, func(t *testing.T) {
			o := chartRender(t, "r", "ns", testkit.ChartValues(t, nil, tc.sets...))
			wd := chComponent(o, "webhook")
			cm := o.ConfigMaps["r-oras-cache-webhook"]
			require.NotNil(t, cm)
			cfg, err := inject.ParseConfig([]byte(cm.Data["config.yaml"]))
			require.NoError(t, err)
			if name == "off" {
				assert.Empty(t, cfg.Server.ClientCAFile)
				assert.NotContains(t, cm.Data, "client-ca.crt")
				return
			}
			dir, file := path.Split(cfg.Server.ClientCAFile)
			var mount *corev1.VolumeMount
			for i, m := range wd.Spec.Template.Spec.Containers[0].VolumeMounts {
				if m.MountPath+"/" == dir {
					mount = &wd.Spec.Template.Spec.Containers[0].VolumeMounts[i]
				}
			}
			require.NotNil(t, mount, "clientCAFile %s is in a mounted directory", cfg.Server.ClientCAFile)
			var vol *corev1.Volume
			for i, v := range wd.Spec.Template.Spec.Volumes {
				if v.Name == mount.Name {
					vol = &wd.Spec.Template.Spec.Volumes[i]
				}
			}
			require.NotNil(t, vol)
			if tc.secret != "" {
				require.NotNil(t, vol.Secret)
				assert.Equal(t, tc.secret, vol.Secret.SecretName)
				assert.Equal(t, []corev1.KeyToPath{{Key: "ca.crt", Path: file}}, vol.Secret.Items)
			} else {
				require.NotNil(t, vol.ConfigMap)
				assert.Equal(t, cm.Name, vol.ConfigMap.Name)
				require.Len(t, vol.ConfigMap.Items, 1)
				assert.Equal(t, file, vol.ConfigMap.Items[0].Path)
				assert.Equal(t, strings.TrimSpace(pem), strings.TrimSpace(cm.Data[vol.ConfigMap.Items[0].Key]), "the CA decoded from caBundle")
			}
		})
	}
	// enabled without a CA: refused, naming both ways to give it
	_, _, _, err := testkit.ChartInstall(t, "r", "ns", testkit.ChartValues(t, nil, "webhook.clientAuth.enabled=true"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "caSecret")
}

func TestChartWebhookNetworkPolicyFrom(t *testing.T) {
	o := chartRender(t, "r", "ns", testkit.ChartValues(t, nil, "networkPolicy.webhookFrom[0].ipBlock.cidr=172.16.0.0/28"))
	np := o.NetworkPolicies["r-oras-cache-webhook"]
	require.NotNil(t, np)
	require.Len(t, np.Spec.Ingress, 1)
	require.Len(t, np.Spec.Ingress[0].From, 1)
	assert.Equal(t, "172.16.0.0/28", np.Spec.Ingress[0].From[0].IPBlock.CIDR)
	require.Len(t, np.Spec.Ingress[0].Ports, 1)
	assert.Equal(t, "webhook", np.Spec.Ingress[0].Ports[0].Port.StrVal)
	// default: the port only, any source
	o = chartRender(t, "r", "ns", testkit.ChartValues(t, nil))
	assert.Empty(t, o.NetworkPolicies["r-oras-cache-webhook"].Spec.Ingress[0].From)
}
