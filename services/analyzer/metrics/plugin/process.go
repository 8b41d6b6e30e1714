package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/argoproj/argo-rollouts/metricproviders/plugin/rpc"
	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/utils/plugin/types"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
)

// handshake is Argo Rollouts' handshake with metric plugins
// (metricproviders/plugin/client): a plugin built for Argo answers only
// to it.
var handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "ARGO_ROLLOUTS_RPC_PLUGIN",
	MagicCookieValue: "metricprovider",
}

// dispensed is the key of Argo's plugin map that plugins serve.
const dispensed = "RpcMetricProviderPlugin"

// secretEnvPrefix is analyzer.SecretEnvPrefix: the local platform's
// Secrets, which are the analysis arguments' and providers', never a
// plugin's.
const secretEnvPrefix = "SLUICE_SECRET_"

// process is one running plugin executable and Argo's RPC client of it.
type process struct {
	client *goplugin.Client
	rpc    rpc.MetricProviderPlugin
}

// ping reports whether the process still answers.
func (p *process) ping() error {
	c, err := p.client.Client()
	if err != nil {
		return err
	}
	return c.Ping()
}

// slot holds the process of one configured plugin. Its lock is held while
// the process starts, so one plugin's slow start holds up no other.
type slot struct {
	plugin plugin
	log    hclog.Logger

	mu     sync.Mutex
	proc   *process
	closed bool
}

var errClosed = errors.New("the analyzer is stopping")

// get returns the running process, starting one when there is none or the
// last one stopped answering (it crashed, or was killed for not answering
// in time), as Argo Rollouts does.
func (s *slot) get() (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if s.proc != nil {
		if s.proc.ping() == nil {
			return s.proc, nil
		}
		s.proc.client.Kill()
		s.proc = nil
	}
	// The file is checked again: it may have been replaced since start.
	if err := verify(s.plugin.path, s.plugin.Sha256); err != nil {
		return nil, err
	}
	cmd := exec.Command(s.plugin.path, s.plugin.Args...)
	cmd.Env = environ()
	dieWithParent(cmd)
	c := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          map[string]goplugin.Plugin{dispensed: &rpc.RpcMetricProviderPlugin{}},
		Cmd:              cmd,
		SkipHostEnv:      true, // cmd.Env has the environment, without Secrets
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolNetRPC},
		StartTimeout:     s.plugin.timeout,
		Logger:           s.log,
	})
	proc, err := dispense(c)
	if err != nil {
		c.Kill()
		return nil, err
	}
	inited := make(chan types.RpcError, 1)
	go func() { inited <- proc.rpc.InitPlugin() }()
	t := time.NewTimer(s.plugin.timeout)
	defer t.Stop()
	select {
	case e := <-inited:
		if e.HasError() {
			c.Kill()
			return nil, fmt.Errorf("InitPlugin: %s", strings.TrimSpace(e.Error()))
		}
	case <-t.C:
		c.Kill()
		return nil, fmt.Errorf("InitPlugin did not answer within %s", s.plugin.timeout)
	}
	s.proc = proc
	return proc, nil
}

func dispense(c *goplugin.Client) (*process, error) {
	rc, err := c.Client()
	if err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	raw, err := rc.Dispense(dispensed)
	if err != nil {
		return nil, fmt.Errorf("dispense %s: %w", dispensed, err)
	}
	impl, ok := raw.(rpc.MetricProviderPlugin)
	if !ok {
		return nil, fmt.Errorf("dispense %s: unexpected %T", dispensed, raw)
	}
	return &process{client: c, rpc: impl}, nil
}

// drop kills proc if it is still the slot's, so that the next get starts
// a new process.
func (s *slot) drop(proc *process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == proc {
		s.proc = nil
	}
	proc.client.Kill()
}

// close kills the process and refuses new ones.
func (s *slot) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.proc != nil {
		s.proc.client.Kill()
		s.proc = nil
	}
}

// environ is the analyzer's environment without the local platform's
// Secrets.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, secretEnvPrefix) {
			env = append(env, kv)
		}
	}
	return env
}

// call runs one RPC of proc within ctx. net/rpc calls cannot be cancelled:
// a plugin that does not answer in time is killed (and started again for
// the next measurement), which also ends the call.
func call[T any](ctx context.Context, s *slot, proc *process, f func(rpc.MetricProviderPlugin) T) (T, error) {
	done := make(chan T, 1)
	go func() { done <- f(proc.rpc) }()
	select {
	case v := <-done:
		return v, nil
	case <-ctx.Done():
	}
	select {
	case v := <-done: // answered as time ran out
		return v, nil
	default:
	}
	s.drop(proc)
	var zero T
	return zero, ctx.Err()
}

// measurementCall is call for the RPCs that return a measurement.
func measurementCall(ctx context.Context, s *slot, proc *process, f func(rpc.MetricProviderPlugin) v1alpha1.Measurement) (v1alpha1.Measurement, error) {
	return call(ctx, s, proc, f)
}
