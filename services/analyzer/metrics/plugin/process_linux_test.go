package plugin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/plugintest"
	"github.com/sluicehq/sluice/services/analyzer/metrics/plugin"
)

// hostEnv makes TestHelperHost an analyzer that starts the plugin at the
// path it holds, prints the plugin's pid and waits to be killed.
const hostEnv = "SLUICE_TEST_PLUGIN_HOST"

func TestHelperHost(t *testing.T) {
	path := os.Getenv(hostEnv)
	if path == "" {
		return // not the helper process
	}
	p, err := plugin.New(plugin.Config{Plugins: []plugin.Plugin{{Name: plugintest.Name, Location: path}}})
	if err != nil {
		t.Fatal(err)
	}
	m := p.Measure(context.Background(), request(metric(plugintest.Name, `{"value":"0.95"}`)))
	if m.Phase != spec.AnalysisPhaseSuccessful {
		t.Fatalf("%s %s", m.Phase, m.Message)
	}
	fmt.Printf("pid %s\n", m.Metadata[plugintest.MetaPID])
	select {}
}

// TestPluginDiesWithTheAnalyzer: an analyzer killed without closing its
// provider (SIGKILL) leaves no plugin running.
func TestPluginDiesWithTheAnalyzer(t *testing.T) {
	path, _ := plugintest.Build(t)
	host := exec.Command(os.Args[0], "-test.run=^TestHelperHost$")
	host.Env = append(os.Environ(), hostEnv+"="+path)
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })
	lines := bufio.NewScanner(out)
	var pid string
	for lines.Scan() {
		if p, ok := strings.CutPrefix(lines.Text(), "pid "); ok {
			pid = p
			break
		}
	}
	if pid == "" {
		t.Fatalf("the host printed no plugin pid (%v)", lines.Err())
	}
	if err := host.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "plugin process "+pid+" to die with its host", func() error {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		// pid (comm) state ...: Z is a dead process not yet reaped.
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] != "Z" {
			return fmt.Errorf("state %s", f[0])
		}
		return nil
	}, poll.Timeout(10*time.Second))
}
