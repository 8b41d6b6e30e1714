package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// On the local platform `sluice get` shows the proxy URL and every process
// of each revision, and `sluice logs` prints their output, from the state
// directory sluice dev keeps.
func TestGetAndLogsShowTheLocalProcesses(t *testing.T) {
	d := newDev(t)
	d.start()
	listen := freeAddr(t)
	d.update(listen, routed("- setWeight: 20\n- pause: {}\n"), 2)
	d.waitGet("web", 2*time.Minute, "Paused (CanaryPauseStep)", "canary 20%")

	_, out := d.sluice("get", "web", "--state-dir", "state")
	for _, want := range []string{"Proxy: http://" + listen, "Processes:", "revision 2 (hash", "canary)", "revision 1 (hash", "stable)", "demoapp bin/demoapp", "ready"} {
		if !strings.Contains(squeeze(out), want) {
			t.Errorf("get lacks %q:\n%s", want, out)
		}
	}

	code, out := d.sluice("get", "web", "--state-dir", "state", "-o", "json")
	var got struct {
		ProxyURL  string `json:"proxyURL"`
		Processes []struct {
			Revision int64 `json:"revision"`
			PID      int   `json:"pid"`
			Port     int   `json:"port"`
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("get -o json: exit %d, %v\n%s", code, err, out)
	}
	revs := map[int64]int{}
	for _, p := range got.Processes {
		revs[p.Revision]++
		if syscall.Kill(p.PID, 0) != nil || p.Port == 0 {
			t.Errorf("process %+v is not running", p)
		}
	}
	if got.ProxyURL != "http://"+listen || revs[1] != 2 || revs[2] != 1 {
		t.Errorf("get -o json: proxy %q, processes by revision %v; want 2 of revision 1 and 1 of revision 2", got.ProxyURL, revs)
	}

	// Each line of output is prefixed with its process.
	line := func(version string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^\[[0-9a-f]+-[0-9]\] .*demoapp ` + version + ` listening on`)
	}
	code, out = d.sluice("logs", "web", "--state-dir", "state")
	if code != 0 || len(line("v1").FindAllString(out, -1)) != 2 || !line("v2").MatchString(out) {
		t.Errorf("logs: exit %d\n%s", code, out)
	}
	code, out = d.sluice("logs", "web", "--state-dir", "state", "--revision", "2")
	if code != 0 || !line("v2").MatchString(out) || strings.Contains(out, "demoapp v1") {
		t.Errorf("logs --revision 2: exit %d\n%s", code, out)
	}
}
