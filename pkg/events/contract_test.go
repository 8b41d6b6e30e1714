package events

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{"web", ""},
		{"web-2", ""},
		{"0abc", ""},
		{strings.Repeat("a", 63), ""},
		{"", "must not be empty"},
		{strings.Repeat("a", 64), "longer than 63"},
		{"Web", "DNS-1123"},
		{"web.prod", "DNS-1123"},
		{"-web", "DNS-1123"},
		{"web-", "DNS-1123"},
		{"we b", "DNS-1123"},
		{"web>", "DNS-1123"},
	}
	for _, tt := range tests {
		err := ValidateName("rollout", tt.name)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestSubjects(t *testing.T) {
	r := Ref{Namespace: "prod", Name: "web"}
	for subject, want := range map[string]string{
		CommandSubject(r):            "sluice.cmd.prod.web",
		StatusSubject(r):             "sluice.status.prod.web",
		TaskSubject("traffic", r):    "sluice.task.traffic.prod.web",
		ResultSubject("replicas", r): "sluice.result.replicas.prod.web",
		DeadLetterSubject("S", "c"):  "sluice.dlq.S.c",
	} {
		if subject != want {
			t.Errorf("subject %q, want %q", subject, want)
		}
	}
	for _, s := range []string{CommandSubject(r), StatusSubject(r), TaskSubject("replicas", r), ResultSubject("traffic", r)} {
		got, err := RefFromSubject(s)
		if err != nil || got != r {
			t.Errorf("RefFromSubject(%q) = %v, %v", s, got, err)
		}
	}
	for _, bad := range []string{"sluice.cmd.prod", "sluice.other.prod.web", "sluice.cmd.Prod.web", "x.cmd.a.b", "sluice.result.prod.web"} {
		if _, err := RefFromSubject(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("RefFromSubject(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
}

func TestParseRef(t *testing.T) {
	if r, err := ParseRef("prod/web"); err != nil || r != (Ref{"prod", "web"}) {
		t.Errorf("ParseRef(prod/web) = %v, %v", r, err)
	}
	if r, err := ParseRef("web"); err != nil || r != (Ref{"default", "web"}) {
		t.Errorf("ParseRef(web) = %v, %v", r, err)
	}
	if _, err := ParseRef("prod/Web_1"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("ParseRef(prod/Web_1) = %v, want ErrInvalidName", err)
	}
}
