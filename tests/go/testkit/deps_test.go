package testkit

import (
	_ "github.com/stretchr/testify/require"
	_ "github.com/xeipuuv/gojsonschema"
	_ "helm.sh/helm/v3/pkg/action"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/apimachinery/pkg/runtime"
	_ "oras.land/oras-go/v2"
	_ "sigs.k8s.io/controller-runtime/pkg/webhook"
)
