package events

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// FuzzDecode feeds arbitrary bodies and headers to Decode: it must never
// panic, and every failure must be a typed ErrMalformed. Headers are given as
// "Key: value" lines.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"full":true}`), "ce-specversion: 1.0\nce-id: 1\nce-source: /ci\nce-type: x\ncontent-type: application/json")
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/ci","type":"x","data":{"a":[1,2]}}`), "content-type: application/cloudevents+json")
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/ci","type":"x","data_base64":"e30="}`), "")
	f.Add([]byte(""), "ce-specversion: 1.0\nce-time: 2020-01-01T00:00:00Z\nce-ext: v")
	f.Add([]byte("\x00\xff"), "content-type: application/cloudevents-batch+json")
	f.Fuzz(func(t *testing.T, data []byte, headers string) {
		h := nats.Header{}
		for _, line := range strings.Split(headers, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		ev, err := Decode(data, h)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		if verr := ev.Validate(); verr != nil {
			t.Fatalf("Decode returned an invalid event: %v", verr)
		}
		// What decodes must survive a round trip through Encode.
		msg, err := Encode("sluice.cmd.a.b", ev)
		if err != nil {
			t.Fatalf("Encode of a decoded event: %v", err)
		}
		if _, err := Decode(msg.Data, msg.Header); err != nil {
			t.Fatalf("decoded event does not re-decode: %v", err)
		}
	})
}
