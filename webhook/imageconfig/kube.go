package imageconfig

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// KubeSecrets reads Secrets from the API server (RBAC: get secrets in the namespace).
type KubeSecrets struct {
	client corev1client.SecretsGetter
}

// NewKubeSecrets returns a SecretGetter using cfg.
func NewKubeSecrets(cfg *rest.Config) (*KubeSecrets, error) {
	c, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &KubeSecrets{client: c}, nil
}

// GetSecret implements SecretGetter.
func (k *KubeSecrets) GetSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	return k.client.Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
}
