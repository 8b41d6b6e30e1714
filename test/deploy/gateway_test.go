package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluicehq/sluice/services/gateway/auth"
)

// TestGatewayIsReachableAndReadsItsAuthFile: in every overlay the
// Service sluice-gateway serves the gateway's --listen port as "http", the
// auth file --auth-config names is the Secret sluice-gateway-auth mounted
// read-only, and the dev overlay's example file is one the gateway loads.
// Production generates no auth Secret: its credentials are the user's.
func TestGatewayIsReachableAndReadsItsAuthFile(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			m := render(t, overlay)
			d := m.deployments["sluice-gateway"]
			if d == nil {
				t.Fatal("no Deployment sluice-gateway")
			}
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]
			var listen, authFile string
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--listen="); ok {
					listen = v
				}
				if v, ok := strings.CutPrefix(a, "--auth-config="); ok {
					authFile = v
				}
			}
			if listen != ":3100" {
				t.Errorf("--listen=%q, want :3100", listen)
			}
			if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "api" && p.ContainerPort == 3100 }) {
				t.Errorf("the container does not name port 3100 api: %+v", c.Ports)
			}
			svc := m.services["sluice-gateway"]
			if svc == nil {
				t.Fatal("no Service sluice-gateway")
			}
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].Port != 3100 || svc.Spec.Ports[0].TargetPort.String() != "api" {
				t.Errorf("Service ports %+v, want http 3100 to the container's api port", svc.Spec.Ports)
			}
			if svc.Spec.Selector["app.kubernetes.io/name"] != "sluice-gateway" || d.Spec.Template.Labels["app.kubernetes.io/name"] != "sluice-gateway" {
				t.Errorf("the Service selects %v, not the gateway's pods", svc.Spec.Selector)
			}

			// --auth-config is a file of the mounted Secret.
			var secret string
			for _, vm := range c.VolumeMounts {
				if filepath.Dir(authFile) != vm.MountPath {
					continue
				}
				if !vm.ReadOnly {
					t.Errorf("the auth file's volume is mounted writable")
				}
				for _, v := range pod.Volumes {
					if v.Name == vm.Name && v.Secret != nil {
						secret = v.Secret.SecretName
					}
				}
			}
			if !strings.HasPrefix(secret, "sluice-gateway-auth") {
				t.Fatalf("--auth-config=%s is not in a mounted Secret sluice-gateway-auth (mounts %+v)", authFile, c.VolumeMounts)
			}
			s := m.secrets[secret]
			if overlay == "production" {
				if s != nil {
					t.Errorf("production generates the auth Secret %s: its credentials must be the user's", secret)
				}
				return
			}
			if s == nil {
				t.Fatalf("the %s overlay does not generate the Secret %s", overlay, secret)
			}
			data, ok := s.Data[filepath.Base(authFile)]
			if !ok {
				t.Fatalf("Secret %s has no key %s", secret, filepath.Base(authFile))
			}
			path := filepath.Join(t.TempDir(), "auth.yaml")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := auth.New(auth.Config{File: path}, nil); err != nil {
				t.Errorf("the gateway refuses the %s overlay's auth file: %v", overlay, err)
			}
		})
	}
}
