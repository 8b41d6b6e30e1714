// Package kubeconfig finds the Kubernetes cluster the kube platform works
// on: the kubeconfig named by --kubeconfig or KUBECONFIG (or
// ~/.kube/config), or the in-cluster service account when the binary runs
// in a pod and no kubeconfig is given.
package kubeconfig

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Flags are the command-line settings of the cluster connection.
type Flags struct {
	// Path is a kubeconfig file; empty means KUBECONFIG, ~/.kube/config,
	// then in-cluster.
	Path string
	// Context is the kubeconfig context; empty means the current one.
	Context string
	// QPS and Burst bound the client's request rate (client-go's defaults
	// are 5 and 10, too few for many rollouts).
	QPS   float32
	Burst int
}

// Add registers the flags on fs.
func (f *Flags) Add(fs *pflag.FlagSet) {
	fs.StringVar(&f.Path, "kubeconfig", "", "kube platform: kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then the in-cluster service account)")
	fs.StringVar(&f.Context, "kube-context", "", "kube platform: kubeconfig context (default: the current context)")
	fs.Float32Var(&f.QPS, "kube-qps", 50, "kube platform: sustained requests per second to the API server")
	fs.IntVar(&f.Burst, "kube-burst", 100, "kube platform: request burst to the API server")
}

// Load returns the REST configuration the flags describe.
func (f Flags) Load() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f.Path != "" {
		rules.ExplicitPath = f.Path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.Context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kube platform: no cluster to talk to (set --kubeconfig or KUBECONFIG, or run in a pod with a service account): %w", err)
	}
	if f.QPS > 0 {
		cfg.QPS = f.QPS
	}
	if f.Burst > 0 {
		cfg.Burst = f.Burst
	}
	return cfg, nil
}

// Clients are the typed and dynamic clients of one cluster.
type Clients struct {
	Config  *rest.Config
	Typed   kubernetes.Interface
	Dynamic dynamic.Interface
}

// Connect loads the configuration and makes both clients, named agent in
// the API server's audit log (User-Agent).
func (f Flags) Connect(agent string) (Clients, error) {
	cfg, err := f.Load()
	if err != nil {
		return Clients{}, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = agent
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Clients{}, fmt.Errorf("kube platform: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return Clients{}, fmt.Errorf("kube platform: %w", err)
	}
	return Clients{Config: cfg, Typed: typed, Dynamic: dyn}, nil
}
