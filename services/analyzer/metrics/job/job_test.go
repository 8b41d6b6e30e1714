package job

import (
	"testing"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "zero: local processes", cfg: Config{}},
		{name: "kube with the Rollout reader", cfg: Config{Kube: new(kubernetes.Clientset), Dynamic: new(dynamic.DynamicClient)}},
		{name: "kube without it: no owners", cfg: Config{Kube: new(kubernetes.Clientset)}},
		{name: "Rollout reader without kube", cfg: Config{Dynamic: new(dynamic.DynamicClient)}, wantErr: "job: Dynamic needs Kube"},
		{name: "negative keep", cfg: Config{Keep: -1}, wantErr: "job: Keep must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if got := errString(err); got != tc.wantErr {
				t.Errorf("Validate() = %q, want %q", got, tc.wantErr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
