// Package kubetest runs a real Kubernetes control plane for tests: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler built from the
// Kubernetes sources, plus kwok, which plays the kubelet for fake Nodes so
// that scheduled Pods become Running and Ready without any container
// runtime. Nothing is mocked between a client and the API server: admission,
// validation, CRD schemas, garbage collection, scheduling and the workload
// controllers behave as in a cluster.
//
// The binaries come from the directory built by scripts/kube-tools.sh
// (`make kube-tools`), named by the SLUICE_KUBE_TOOLS environment variable;
// when it is unset, Start runs the script itself (the first build takes
// several minutes, later ones reuse a cache outside the repository).
//
// One control plane per test binary is the intended use:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		cp := kubetest.Shared(t)
//		ns := cp.Namespace(t)
//		_, err := cp.Client.AppsV1().Deployments(ns).Create(t.Context(), dep, metav1.CreateOptions{})
//		...
//	}
//
// Tests share it, so each works in its own namespace (Namespace) and leaves
// cluster-scoped objects alone or names them uniquely. What the control
// plane can and cannot do is described in docs/testing-kube.md: there is no
// container runtime, no kube-proxy, no DNS and no metrics-server; Pod and
// Service IPs are fictitious and must never be dialled.
package kubetest
