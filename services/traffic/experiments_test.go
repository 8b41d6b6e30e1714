package traffic_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

func exp(template, service string, weight int32) tasks.ExperimentRoute {
	return tasks.ExperimentRoute{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: template, Service: service}, Weight: weight}
}

func TestStableWeight(t *testing.T) {
	cases := []struct {
		name    string
		canary  int32
		max     int32
		exps    []tasks.ExperimentRoute
		want    int32
		wantErr string
	}{
		{name: "no experiment", canary: 30, max: 100, want: 70},
		{name: "templates take from the stable", canary: 20, max: 100, exps: []tasks.ExperimentRoute{exp("a", "x", 10), exp("b", "y", 15)}, want: 55},
		{name: "of maxTrafficWeight", canary: 200, max: 1000, exps: []tasks.ExperimentRoute{exp("a", "x", 100)}, want: 700},
		{name: "everything to the templates", canary: 0, max: 100, exps: []tasks.ExperimentRoute{exp("a", "x", 50), exp("b", "y", 50)}, want: 0},
		{name: "above max", canary: 60, max: 100, exps: []tasks.ExperimentRoute{exp("a", "x", 41)}, wantErr: "add up to 101, above 100"},
		{name: "a negative weight", canary: 10, max: 100, exps: []tasks.ExperimentRoute{exp("a", "x", -5)}, wantErr: "template a: weight -5 is below 0"},
		{name: "a canary weight out of range", canary: 101, max: 100, wantErr: "canary weight 101 is not between 0 and 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			route := traffictest.Canary(tc.canary)
			route.Experiments = tc.exps
			got, err := traffic.StableWeight(route, tc.max)
			if tc.wantErr != "" {
				if !errors.Is(err, traffic.ErrRejected) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %d, %v; want ErrRejected saying %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestExperimentServices(t *testing.T) {
	cases := []struct {
		name    string
		exps    []tasks.ExperimentRoute
		wantErr string
	}{
		{name: "each its own", exps: []tasks.ExperimentRoute{exp("a", "web-a", 10), exp("b", "web-b", 10)}},
		{name: "none", exps: []tasks.ExperimentRoute{exp("a", "", 10)}, wantErr: "template a has a weight and no Service"},
		{name: "the canary's", exps: []tasks.ExperimentRoute{exp("a", "web-canary", 10)}, wantErr: `its Service "web-canary" is the rollout's canary or stable Service`},
		{name: "shared", exps: []tasks.ExperimentRoute{exp("a", "web-x", 10), exp("b", "web-x", 10)}, wantErr: `template b and template a share Service "web-x"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			route := traffictest.Canary(10)
			route.Experiments = tc.exps
			err := traffic.ExperimentServices(route)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, traffic.ErrRejected) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want ErrRejected saying %q", err, tc.wantErr)
			}
		})
	}
}
