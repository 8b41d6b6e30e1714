package cdevents

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	if e, err := New(nil, Deps{}); e != nil || err != nil {
		t.Errorf("nothing configured: %v %v", e, err)
	}
	if _, err := New(json.RawMessage(`{"mode": "binary"}`), Deps{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("no sink: %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(json.RawMessage(`{"sink": "https://cdviz.example/webhook", "headers": {"Authorization": "Bearer s3cret"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != "/sluice" || c.Mode != ModeBinary {
		t.Errorf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		name, json string
		paths      []string
	}{
		{"nothing", `{}`, []string{"cdevents.sink: "}},
		{"both", `{"sink": "http://x", "subject": "cd.events"}`, []string{"cdevents.sink: "}},
		{"bad sink", `{"sink": "ftp://user:pw@x/y?token=t0k"}`, []string{"cdevents.sink: "}},
		{"wildcard subject", `{"subject": "cd.*"}`, []string{"cdevents.subject: "}},
		{"the bus's subject", `{"subject": "sluice.status.x"}`, []string{"cdevents.subject: "}},
		{"bad mode and headers on a subject", `{"subject": "cd.events", "mode": "batch", "headers": {"A": "b"}}`, []string{"cdevents.mode: ", "cdevents.headers: "}},
		{"unknown field", `{"sinks": "http://x"}`, []string{"cdevents: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(json.RawMessage(tc.json))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v, want ErrInvalidConfig", err)
			}
			for _, p := range tc.paths {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("no %q in %v", p, err)
				}
			}
			for _, secret := range []string{"pw", "t0k"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("a secret in %v", err)
				}
			}
		})
	}
}
