package slack

import (
	"testing"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name        string
		groupingKey string
		policy      string
		thread      bool
		want        step
		wantErr     bool
	}{
		{name: "no grouping key posts at the top", policy: notify.SlackUpdate, thread: true, want: step{post: true}},
		{name: "first of a grouping key posts at the top", groupingKey: "k", want: step{post: true}},
		{name: "first with Update posts at the top", groupingKey: "k", policy: notify.SlackUpdate, want: step{post: true}},
		{name: "default policy replies", groupingKey: "k", thread: true, want: step{post: true, reply: true}},
		{name: "Post replies", groupingKey: "k", policy: notify.SlackPost, thread: true, want: step{post: true, reply: true}},
		{name: "Update edits", groupingKey: "k", policy: notify.SlackUpdate, thread: true, want: step{update: true}},
		{name: "PostAndUpdate does both", groupingKey: "k", policy: notify.SlackPostAndUpdate, thread: true, want: step{post: true, reply: true, update: true}},
		{name: "unknown policy", groupingKey: "k", policy: "Replace", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := plan(tc.groupingKey, tc.policy, tc.thread)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("plan = %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseThread(t *testing.T) {
	for in, ok := range map[string]bool{"C0DEPLOYS:1700000000.000001": true, "": false, "C0DEPLOYS": false, ":1.2": false, "C1:": false} {
		if _, got := parseThread(in); got != ok {
			t.Errorf("parseThread(%q) ok = %v, want %v", in, got, ok)
		}
	}
}
