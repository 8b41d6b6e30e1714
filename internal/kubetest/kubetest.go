package kubetest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configures Start. The zero value is ready to use.
type Options struct {
	// Nodes is how many fake Nodes kwok runs (named kwok-node-0, ...).
	// Default 1.
	Nodes int
	// ToolsDir is a directory built by scripts/kube-tools.sh. Default: the
	// SLUICE_KUBE_TOOLS environment variable, or else the script is run.
	ToolsDir string
	// LogDir receives one log file per component and is kept after Stop.
	// Default: a directory inside the control plane's temporary directory,
	// removed by Stop.
	LogDir string
	// StartTimeout bounds how long the components may take to become
	// ready once the binaries are at hand. Default 3 minutes: the machine
	// may be busy compiling.
	StartTimeout time.Duration
	// Audit makes kube-apiserver log the metadata of every request but
	// the control plane's own components', so that AuditMark and
	// Audit.Since count each client's requests. Off by default: it costs
	// the API server a write per request.
	Audit bool
}

// Addresses the cluster hands out. They are fictitious: no kube-proxy or
// network plugin exists, and nothing may dial them.
const (
	ServiceCIDR = "10.96.0.0/16"
	PodCIDR     = "10.244.0.0/16"
)

// NodeAnnotation is the annotation kwok manages Nodes by; Start puts it on
// the Nodes it creates, and a test may create more Nodes carrying it.
const NodeAnnotation = "kwok.x-k8s.io/node"

// ControlPlane is a running control plane. Its exported fields are set by
// Start and must not be changed.
type ControlPlane struct {
	// Config reaches the API server as a member of system:masters. Copy it
	// (rest.CopyConfig) before changing it.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file with the same
	// credentials, for binaries run with KUBECONFIG or --kubeconfig.
	Kubeconfig string
	// Client and Dynamic are clients built from Config.
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Nodes are the names of the fake Nodes, all Ready when Start returns.
	Nodes []string
	// ToolsDir is the directory the binaries came from.
	ToolsDir string
	// LogDir holds one log file per component (etcd.log, ...).
	LogDir string

	dir      string // temporary directory, removed by Stop
	auditLog string // the API server's audit log, with Options.Audit
	setup    *setup // addresses and credentials, for restarts and the fault proxy
	mu       sync.Mutex
	procs    []*process // guarded by mu: a restart replaces its entry
	stopOnce sync.Once
}

// Start builds or finds the binaries (see Options.ToolsDir), starts etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok, creates
// the fake Nodes and returns once they are Ready, the default namespace has
// its ServiceAccount and the scheduler and controller manager report
// healthy. On error nothing is left running, the error carries the end of
// the log of the component that failed, and the logs are kept. ErrNoTools
// is returned (wrapped) when the binaries cannot be found or built.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 3 * time.Minute
	}
	tools, err := findTools(ctx, opts.ToolsDir)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "sluice-kubetest-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	cp := &ControlPlane{ToolsDir: tools, dir: dir, LogDir: opts.LogDir}
	if cp.LogDir == "" {
		cp.LogDir = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(cp.LogDir, 0o755); err != nil {
		cp.Stop()
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := cp.start(ctx, opts); err != nil {
		// The error quotes the end of one log; the others may explain it.
		cp.stop(true)
		return nil, fmt.Errorf("%w\n(all logs: %s)", err, cp.LogDir)
	}
	return cp, nil
}

// setup is what the components share: addresses, credentials, environment.
type setup struct {
	etcdPort, peerPort, apiPort, kcmPort, schedPort int

	pki         *pki
	env         []string
	etcdURL     string
	apiURL      string
	kubeconfigs map[string]string // identity -> kubeconfig path
}

func (cp *ControlPlane) start(ctx context.Context, opts Options) error {
	s, err := cp.prepare()
	if err != nil {
		return err
	}
	cp.setup = s
	if err := cp.startEtcd(ctx, s); err != nil {
		return err
	}
	if err := cp.startAPIServer(ctx, s, opts.Audit); err != nil {
		return err
	}
	kcm, scheduler, kwok, err := cp.startControllers(s)
	if err != nil {
		return err
	}
	for i := range opts.Nodes {
		name := fmt.Sprintf("kwok-node-%d", i)
		if _, err := cp.Client.CoreV1().Nodes().Create(ctx, fakeNode(name), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("kubetest: create node %s: %w", name, err)
		}
		cp.Nodes = append(cp.Nodes, name)
	}

	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	if err := waitFor(ctx, kcm, "kube-controller-manager healthy", func(ctx context.Context) error {
		return httpOK(ctx, insecure, "https://127.0.0.1:"+strconv.Itoa(s.kcmPort)+"/healthz")
	}); err != nil {
		return err
	}
	if err := waitFor(ctx, scheduler, "kube-scheduler healthy", func(ctx context.Context) error {
		return httpOK(ctx, insecure, "https://127.0.0.1:"+strconv.Itoa(s.schedPort)+"/healthz")
	}); err != nil {
		return err
	}
	for _, name := range cp.Nodes {
		// Ready is kwok's doing; losing the not-ready taint is the node
		// lifecycle controller's, and until then nothing schedules there.
		if err := waitFor(ctx, kwok, "node "+name+" Ready and untainted", func(ctx context.Context) error {
			return nodeSchedulable(ctx, cp.Client, name)
		}); err != nil {
			return err
		}
	}
	return waitFor(ctx, kcm, "ServiceAccount default/default", func(ctx context.Context) error {
		_, err := cp.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// prepare picks ports and writes certificates, keys and tokens.
func (cp *ControlPlane) prepare() (*setup, error) {
	ports, err := freePorts(5)
	if err != nil {
		return nil, fmt.Errorf("kubetest: free ports: %w", err)
	}
	s := &setup{etcdPort: ports[0], peerPort: ports[1], apiPort: ports[2], kcmPort: ports[3], schedPort: ports[4]}
	s.etcdURL = "http://127.0.0.1:" + strconv.Itoa(s.etcdPort)
	s.apiURL = "https://127.0.0.1:" + strconv.Itoa(s.apiPort)

	serviceIP := net.IPv4(10, 96, 0, 1) // first address of ServiceCIDR
	if s.pki, err = newPKI(filepath.Join(cp.dir, "pki"), serviceIP); err != nil {
		return nil, fmt.Errorf("kubetest: certificates and keys: %w", err)
	}
	home := filepath.Join(cp.dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	s.env = componentEnv(home)
	s.kubeconfigs = map[string]string{}
	for _, id := range identities {
		path := filepath.Join(cp.dir, id+".kubeconfig")
		if err := writeKubeconfig(path, s.apiURL, s.pki.caCert, s.pki.tokens[id]); err != nil {
			return nil, fmt.Errorf("kubetest: kubeconfig: %w", err)
		}
		s.kubeconfigs[id] = path
	}
	return s, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context, s *setup) error {
	peerURL := "http://127.0.0.1:" + strconv.Itoa(s.peerPort)
	etcd, err := cp.run("etcd", s.env,
		"--name=kubetest",
		"--data-dir="+filepath.Join(cp.dir, "etcd"),
		"--listen-client-urls="+s.etcdURL,
		"--advertise-client-urls="+s.etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		// Test data: losing it in a power cut is fine, fsync latency on a
		// busy disk is not.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	return waitFor(ctx, etcd, "etcd healthy", func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, s.etcdURL+"/health")
	})
}

// startAPIServer starts kube-apiserver and, once it is ready, sets
// cp.Config, cp.Kubeconfig and the clients.
func (cp *ControlPlane) startAPIServer(ctx context.Context, s *setup, audit bool) error {
	args := []string{
		"--etcd-servers=" + s.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(s.apiPort),
		"--tls-cert-file=" + s.pki.certPath,
		"--tls-private-key-file=" + s.pki.keyPath,
		"--token-auth-file=" + s.pki.tokensPath,
		"--client-ca-file=" + s.pki.caCertPath,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + s.pki.saPubPath,
		"--service-account-signing-key-file=" + s.pki.saKeyPath,
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		// The apiserver would publish 127.0.0.1 as the endpoint of the
		// "kubernetes" Service, which Endpoints validation rejects; no
		// client here reaches the API server through that Service.
		"--endpoint-reconciler-type=none",
		// Fake nodes have no kubelet; should anything ask for logs or
		// exec, dial the node's InternalIP (127.0.0.1, set by kwok's
		// --node-ip) rather than resolve a name.
		"--kubelet-preferred-address-types=InternalIP",
		// API priority and fairness costs CPU and matters only under load.
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	}
	if audit {
		policy := filepath.Join(cp.dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
			return fmt.Errorf("kubetest: audit policy: %w", err)
		}
		cp.auditLog = filepath.Join(cp.dir, "audit.log")
		// Blocking: a request's line is written before it is answered,
		// so what a test reads after an answer is complete.
		args = append(args, "--audit-policy-file="+policy, "--audit-log-path="+cp.auditLog,
			"--audit-log-format=json", "--audit-log-mode=blocking", "--audit-log-maxsize=0")
	}
	apiserver, err := cp.run("kube-apiserver", s.env, args...)
	if err != nil {
		return err
	}
	cp.Kubeconfig = s.kubeconfigs["admin"]
	cp.Config = &rest.Config{
		Host:            s.apiURL,
		BearerToken:     s.pki.tokens["admin"],
		TLSClientConfig: rest.TLSClientConfig{CAData: s.pki.caCert},
		// Tests create objects in bursts; client-side throttling at the
		// default 5 QPS only slows them down.
		QPS:   100,
		Burst: 200,
	}
	if cp.Client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return fmt.Errorf("kubetest: client: %w", err)
	}
	if cp.Dynamic, err = dynamic.NewForConfig(cp.Config); err != nil {
		return fmt.Errorf("kubetest: dynamic client: %w", err)
	}
	return waitFor(ctx, apiserver, "kube-apiserver ready", func(ctx context.Context) error {
		_, err := cp.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

// startControllers starts the API server's clients: the controller
// manager, the scheduler and kwok. Start waits for them.
func (cp *ControlPlane) startControllers(s *setup) (kcm, scheduler, kwok *process, err error) {
	// The controller manager and the scheduler serve only /healthz (always
	// allowed) on their secure ports: without --authentication-kubeconfig
	// they skip the lookups that would fill their logs with errors about a
	// requestheader CA that nothing here needs.
	kcm, err = cp.run("kube-controller-manager", s.env,
		"--kubeconfig="+s.kubeconfigs["kube-controller-manager"],
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(s.kcmPort),
		"--cert-dir="+filepath.Join(cp.dir, "kube-controller-manager"),
		"--leader-elect=false",
		"--controllers="+strings.Join(controllers, ","),
		"--service-account-private-key-file="+s.pki.saKeyPath,
		"--root-ca-file="+s.pki.caCertPath,
		"--service-cluster-ip-range="+ServiceCIDR,
		// The default 15s makes HPA tests wait; the behaviour is the same.
		"--horizontal-pod-autoscaler-sync-period=5s",
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return nil, nil, nil, err
	}
	scheduler, err = cp.run("kube-scheduler", s.env,
		"--kubeconfig="+s.kubeconfigs["kube-scheduler"],
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(s.schedPort),
		"--cert-dir="+filepath.Join(cp.dir, "kube-scheduler"),
		"--leader-elect=false",
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return nil, nil, nil, err
	}
	stages, err := stageFiles(filepath.Join(cp.ToolsDir, "kwok-stages"))
	if err != nil {
		return nil, nil, nil, err
	}
	own, err := writeStages(filepath.Join(cp.dir, "kwok-stages"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kubetest: kwok stages: %w", err)
	}
	stages = append(stages, own...)
	args := []string{
		"--kubeconfig=" + s.kubeconfigs["kwok"],
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + NodeAnnotation + "=fake",
		"--cidr=" + PodCIDR,
		"--node-ip=127.0.0.1",
		// The node's Lease is its heartbeat: without one kwok refreshes the
		// Ready condition only every ten minutes (its heartbeat stage), the
		// node lifecycle controller finds the node not ready after its
		// 50 s grace period and marks every pod on it not ready, and any
		// test running longer than that loses its available pods.
		"--node-lease-duration-seconds=40",
	}
	for _, f := range stages {
		args = append(args, "--config="+f)
	}
	kwok, err = cp.run("kwok", s.env, args...)
	if err != nil {
		return nil, nil, nil, err
	}
	return kcm, scheduler, kwok, nil
}

// controllers run by kube-controller-manager: the workload controllers and
// what they depend on. Left out: volumes, certificates, node IPAM, cloud,
// jobs' and tokens' cleaners, and the like.
var controllers = []string{
	"replicaset-controller",
	"deployment-controller",
	"statefulset-controller",
	"daemonset-controller",
	"job-controller",
	"garbage-collector-controller",
	"horizontal-pod-autoscaler-controller",
	"disruption-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"namespace-controller",
	"node-lifecycle-controller",
	"pod-garbage-collector-controller",
	"endpoints-controller",
	"endpointslice-controller",
	"clusterrole-aggregation-controller",
}

// Stop ends every component (politely, then by force) and removes the
// temporary directory, including the logs unless Options.LogDir put them
// elsewhere. Safe to call more than once.
func (cp *ControlPlane) Stop() {
	cp.stop(false)
}

func (cp *ControlPlane) stop(keepLogs bool) {
	cp.stopOnce.Do(func() {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		var wg sync.WaitGroup
		// Clients before servers, so that shutdown is not a storm of
		// connection errors; etcd last.
		for i := len(cp.procs) - 1; i >= 0; i-- {
			p := cp.procs[i]
			if p.name == "etcd" || p.name == "kube-apiserver" {
				continue
			}
			wg.Go(func() { p.stop(5 * time.Second) })
		}
		wg.Wait()
		for i := len(cp.procs) - 1; i >= 0; i-- {
			if p := cp.procs[i]; p.name == "etcd" || p.name == "kube-apiserver" {
				p.stop(10 * time.Second)
			}
		}
		if keepLogs && filepath.Dir(cp.LogDir) == cp.dir {
			// Everything but the logs.
			entries, _ := os.ReadDir(cp.dir)
			for _, e := range entries {
				if p := filepath.Join(cp.dir, e.Name()); p != cp.LogDir {
					_ = os.RemoveAll(p)
				}
			}
			return
		}
		_ = os.RemoveAll(cp.dir)
	})
}

// Namespace creates a namespace for one test and returns its name. It
// returns once the namespace's default ServiceAccount exists, so Pods can
// be created in it at once, and deletes the namespace when the test ends.
func (cp *ControlPlane) Namespace(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), time.Minute)
	defer cancel()
	ns, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("kubetest: create namespace: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := cp.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			tb.Errorf("kubetest: delete namespace %s: %v", ns.Name, err)
		}
	})
	for {
		_, err := cp.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return ns.Name
		}
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			tb.Fatalf("kubetest: default ServiceAccount of %s: %v", ns.Name, err)
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("kubetest: namespace %s has no default ServiceAccount yet: %v (see %s)",
				ns.Name, ctx.Err(), filepath.Join(cp.LogDir, "kube-controller-manager.log"))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// run starts one component from the tools directory.
func (cp *ControlPlane) run(name string, env []string, args ...string) (*process, error) {
	p, err := startProcess(name, filepath.Join(cp.ToolsDir, "bin", name), args, env, cp.LogDir)
	if err != nil {
		return nil, err
	}
	cp.mu.Lock()
	cp.procs = append(cp.procs, p)
	cp.mu.Unlock()
	return p, nil
}

// waitFor polls check until it succeeds. It fails early if p exits, and on
// failure reports the last check error and the tail of p's log.
func waitFor(ctx context.Context, p *process, what string, check func(context.Context) error) error {
	started := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if gone, how := p.exited(); gone {
			return fmt.Errorf("kubetest: waiting for %s: %s %v\n%s", what, p.name, how, p.tail(40))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: waiting for %s: gave up after %s (%w); last check: %v\n%s",
				what, time.Since(started).Round(time.Second), ctx.Err(), err, p.tail(40))
		case <-tick.C:
		}
	}
}

// insecureTLS is for the health checks of the controller manager and the
// scheduler, which serve on loopback with certificates they made up.
func insecureTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback health checks only
}

func httpOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func nodeSchedulable(ctx context.Context, client kubernetes.Interface, name string) error {
	node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		return errors.New("not Ready")
	}
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			return fmt.Errorf("still tainted %s:%s", t.Key, t.Effect)
		}
	}
	return nil
}

// fakeNode is a Node for kwok to manage: roomy, so that tests never run
// out of capacity, and untainted, since every Node here is fake.
func fakeNode(name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{NodeAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{
				"kubernetes.io/arch":     "amd64",
				"kubernetes.io/os":       "linux",
				"kubernetes.io/hostname": name,
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

// stageFiles lists kwok's Stage manifests under dir.
func stageFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	if err == nil && len(files) == 0 {
		err = errors.New("no stage files")
	}
	if err != nil {
		return nil, fmt.Errorf("kubetest: kwok stages in %s: %w; rebuild with `make kube-tools`", dir, err)
	}
	return files, nil
}

func writeKubeconfig(path, server string, ca []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["kubetest"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "kubetest", Namespace: "default"}
	cfg.CurrentContext = "kubetest"
	return clientcmd.WriteToFile(*cfg, path)
}

// componentEnv is the environment of every component: the test's, less
// what would point them at another cluster, with HOME in the temporary
// directory so that nothing reads or writes the developer's dotfiles
// (kwok loads ~/.kwok/kwok.yaml when it exists).
func componentEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOME" || k == "KUBECONFIG" || strings.HasPrefix(k, "KUBERNETES_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
