package local

import (
	"errors"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
)

// TestProcessesReadsWhatRunsFromTheStateDirectory is what `sluice get` and
// `sluice logs` see: each live process with its pid, port, command, image
// and restarts, and its log.
func TestProcessesReadsWhatRunsFromTheStateDirectory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	b := e.backend(t, dir)
	tmpl := app{probe: httpProbe(intstr.FromInt32(8080))}.template()
	tmpl.Spec.Containers[0].Image = "helper:1"
	if _, err := b.Apply(waitCtx(t), web, 1, scaleOf(0, revScale(1, "aaa", 2, tmpl))); err != nil {
		t.Fatal(err)
	}
	ps, err := Processes(dir, web)
	if err != nil || len(ps) != 2 {
		t.Fatalf("Processes: %+v, %v", ps, err)
	}
	for i, p := range ps {
		if p.Slot != i || p.PodHash != "aaa" || p.Revision != 1 || p.PID == 0 || p.Port == 0 || !p.Ready ||
			p.Image != "helper:1" || len(p.Command) == 0 || p.Command[0] != os.Args[0] || p.Restarts != 0 {
			t.Errorf("process %d: %+v", i, p)
		}
	}
	logs, err := LogFiles(dir, web)
	if err != nil || logs[ps[0].Name()] != ps[0].Log || len(logs) != 2 {
		t.Errorf("LogFiles: %v, %v; want %s", logs, err, ps[0].Log)
	}

	first := ps[0].PID
	if resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(ps[0].Port) + "/crash"); err == nil {
		resp.Body.Close()
	}
	poll.Until(t, "the crashed process restarted in the state directory", func() error {
		ps, err := Processes(dir, web)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(ps, func(p Process) bool { return p.Slot == 0 })
		if i < 0 || ps[i].PID == first || ps[i].Restarts != 1 {
			return errors.New("not yet")
		}
		return nil
	})

	if _, err := Processes(dir, events.Ref{Namespace: "default", Name: "other"}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a rollout with no state: %v, want os.ErrNotExist", err)
	}
}
