package webhook

// The webhook → sidecar contract, checked on real output: the args the webhook injected into every
// golden mutated.yaml must parse with the sidecar's own parsers (sidecar/contract) and render back
// to the same args.

import (
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/webhook/inject"
)

func TestContractGoldenArgsParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*", "mutated.yaml"))
	if err != nil || len(files) < 10 {
		t.Fatalf("want the golden mutated pods, found %d (%v)", len(files), err)
	}
	roles := map[string]int{}
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f)), func(t *testing.T) {
			var pod corev1.Pod
			if err := yaml.Unmarshal([]byte(whReadFile(t, f)), &pod); err != nil {
				t.Fatal(err)
			}
			if pod.Annotations[inject.AnnotationStatus] != inject.StatusInjected {
				return // admitted unchanged: nothing injected
			}
			all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
			for _, c := range all {
				argv := append(append([]string{}, c.Command...), c.Args...)
				var role string
				var rendered []string
				var err error
				switch {
				case c.Name == inject.InitContainerName || c.Name == inject.PushContainerName:
					if len(argv) < 2 || argv[0] != contract.SidecarBinary {
						t.Fatalf("%s runs %q, not %s", c.Name, argv, contract.SidecarBinary)
					}
					role = argv[1]
					switch {
					case c.Name == inject.InitContainerName && role == contract.RoleInit:
						var a contract.InitArgs
						a, err = contract.ParseInit(argv[2:])
						rendered = a.Args()
					case c.Name == inject.PushContainerName && role == contract.RolePush:
						var a contract.PushArgs
						a, err = contract.ParsePush(argv[2:])
						rendered = a.Args()
					default:
						t.Fatalf("%s runs role %q", c.Name, role)
					}
				case len(argv) > 0 && argv[0] == contract.LauncherPath:
					if argv[1] != contract.RoleLaunch {
						t.Fatalf("%s: the launcher runs role %q", c.Name, argv[1])
					}
					role = contract.RoleLaunch
					var a contract.LaunchArgs
					a, err = contract.ParseLaunch(argv[2:])
					rendered = a.Args()
				default:
					continue // a container the webhook left alone
				}
				if err != nil {
					t.Fatalf("container %s: the sidecar refuses %q: %v", c.Name, argv, err)
				}
				if !reflect.DeepEqual(rendered, argv[1:]) {
					t.Fatalf("container %s: %q parses and renders back as %q", c.Name, argv[1:], rendered)
				}
				roles[role]++
			}
		})
	}
	for _, r := range []string{contract.RoleInit, contract.RoleLaunch, contract.RolePush} {
		if roles[r] == 0 {
			t.Errorf("no golden case injects a %s container", r)
		}
	}
}

// The sidecar binary must build without Kubernetes: it runs in every annotated pod and its
// image holds nothing else.
func TestSidecarHasNoKubernetesDependency(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./sidecar/...")
	cmd.Dir = filepath.Join("..", "..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, "sigs.k8s.io/") {
			t.Errorf("the sidecar depends on %s", p)
		}
	}
}
