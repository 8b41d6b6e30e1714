package kubetest

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// RestartAPIServer kills kube-apiserver (SIGKILL, as a crash), keeps it
// down for down, starts it again with the same flags on the same port and
// returns once it is ready. Meanwhile every client sees refused
// connections and every watch ends; the controller manager, the scheduler
// and kwok reconnect on their own. The shared control plane is every
// test's: restart only one a test started itself (Start).
func (cp *ControlPlane) RestartAPIServer(ctx context.Context, down time.Duration) error {
	apiserver, err := cp.restart(ctx, "kube-apiserver", down)
	if err != nil {
		return err
	}
	return cp.waitAPIServer(ctx, apiserver)
}

// RestartEtcd kills etcd (SIGKILL), keeps it down for down, starts it
// again on the same data directory and ports, and returns once etcd is
// healthy and kube-apiserver, which stays up and answers errors meanwhile,
// is ready again. Nothing written before the kill is lost: the data
// directory's writes are in the kernel's page cache even without fsync.
func (cp *ControlPlane) RestartEtcd(ctx context.Context, down time.Duration) error {
	etcd, err := cp.restart(ctx, "etcd", down)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, etcd, "etcd healthy after its restart", func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, cp.setup.etcdURL+"/health")
	}); err != nil {
		return err
	}
	return cp.waitAPIServer(ctx, cp.process("kube-apiserver"))
}

// restart kills the component name, waits down, and starts it again in
// its place.
func (cp *ControlPlane) restart(ctx context.Context, name string, down time.Duration) (*process, error) {
	old := cp.process(name)
	if old == nil {
		return nil, fmt.Errorf("kubetest: restart %s: no such component", name)
	}
	old.kill()
	select {
	case <-time.After(down):
	case <-ctx.Done():
		return nil, fmt.Errorf("kubetest: restart %s: %w", name, ctx.Err())
	}
	p, err := old.restart()
	if err != nil {
		return nil, err
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for i, q := range cp.procs {
		if q == old {
			cp.procs[i] = p
		}
	}
	return p, nil
}

// process returns the running component name.
func (cp *ControlPlane) process(name string) *process {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, p := range cp.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

func (cp *ControlPlane) waitAPIServer(ctx context.Context, apiserver *process) error {
	return waitFor(ctx, apiserver, "kube-apiserver ready after a restart", func(ctx context.Context) error {
		_, err := cp.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}
