package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	ev, err := New("/sluice/test", TypeRolloutPromote, "prod/web", PromoteData{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Context.SetExtension("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"); err != nil {
		t.Fatal(err)
	}
	msg, err := Encode(CommandSubject(Ref{"prod", "web"}), ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get("ce-type"); got != TypeRolloutPromote {
		t.Errorf("ce-type header = %q", got)
	}
	if got := msg.Header.Get("content-type"); got != ContentTypeJSON {
		t.Errorf("content-type header = %q", got)
	}
	back, err := Decode(msg.Data, msg.Header)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID() != ev.ID() || back.Source() != ev.Source() || back.Subject() != "prod/web" || !back.Time().Equal(ev.Time()) {
		t.Errorf("attributes changed: %v -> %v", ev, back)
	}
	if back.Extensions()["traceparent"] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Errorf("traceparent lost: %v", back.Extensions())
	}
	var data PromoteData
	if err := DecodeData(back, &data); err != nil || !data.Full {
		t.Errorf("data = %+v, %v", data, err)
	}
}

func TestDecode(t *testing.T) {
	binary := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	base := []string{"ce-specversion", "1.0", "ce-id", "1", "ce-source", "/ci", "ce-type", TypeRolloutAbort, "ce-subject", "default/web"}
	tests := []struct {
		name     string
		data     string
		header   nats.Header
		wantErr  string // substring; empty means success
		wantType string
	}{
		{name: "binary without data", header: binary(base...), wantType: TypeRolloutAbort},
		{name: "binary with JSON data", data: `{"full":true}`, header: binary(append(base, "content-type", "application/json")...), wantType: TypeRolloutAbort},
		{name: "binary header names in any case", header: binary("CE-SpecVersion", "1.0", "Ce-Id", "1", "CE-SOURCE", "/ci", "ce-Type", "x.y"), wantType: "x.y"},
		{name: "structured by content type", data: `{"specversion":"1.0","id":"1","source":"/ci","type":"x.y","data":{"a":1}}`, header: binary("content-type", "application/cloudevents+json; charset=utf-8"), wantType: "x.y"},
		{name: "structured without headers as nats pub sends it", data: ` {"specversion":"1.0","id":"1","source":"/ci","type":"x.y"}`, wantType: "x.y"},
		{name: "plain JSON is not an event", data: `{"full":true}`, wantErr: "not a CloudEvent"},
		{name: "empty message", wantErr: "not a CloudEvent"},
		{name: "batch mode", data: `[]`, header: binary("content-type", "application/cloudevents-batch+json"), wantErr: "batch content mode"},
		{name: "binary spec version 0.3", header: binary("ce-specversion", "0.3", "ce-id", "1", "ce-source", "/ci", "ce-type", "x"), wantErr: `unsupported specversion "0.3"`},
		{name: "binary missing id", header: binary("ce-specversion", "1.0", "ce-source", "/ci", "ce-type", "x"), wantErr: "id"},
		{name: "binary missing type", header: binary("ce-specversion", "1.0", "ce-id", "1", "ce-source", "/ci"), wantErr: "type"},
		{name: "binary bad time", header: binary(append(base, "ce-time", "yesterday")...), wantErr: "ce-time"},
		{name: "binary data not JSON", data: `{nope`, header: binary(base...), wantErr: "not valid JSON"},
		{name: "binary non-JSON content type", data: `hello`, header: binary(append(base, "content-type", "text/plain")...), wantErr: `"text/plain" is not JSON`},
		{name: "structured broken JSON", data: `{"specversion":"1.0",`, header: binary("content-type", ContentTypeStructured), wantErr: "structured event"},
		{name: "structured missing source", data: `{"specversion":"1.0","id":"1","type":"x"}`, header: binary("content-type", ContentTypeStructured), wantErr: "source"},
		{name: "structured XML data", data: `{"specversion":"1.0","id":"1","source":"/ci","type":"x","datacontenttype":"application/xml","data":"<a/>"}`, header: binary("content-type", ContentTypeStructured), wantErr: "is not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode([]byte(tt.data), tt.header)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Decode succeeded with %v; want error containing %q", ev, tt.wantErr)
				}
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("error %v does not wrap ErrMalformed", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.Type() != tt.wantType {
				t.Errorf("type = %q, want %q", ev.Type(), tt.wantType)
			}
		})
	}
}

func TestDecodeStructuredKeepsData(t *testing.T) {
	manifest := `{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout","metadata":{"name":"web"}}`
	body := `{"specversion":"1.0","id":"abc","source":"/ci","type":"` + TypeRolloutRequested + `","subject":"default/web","datacontenttype":"application/json","data":` + manifest + `}`
	ev, err := Decode([]byte(body), nats.Header{"Content-Type": {ContentTypeStructured}})
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	if err := json.Unmarshal(ev.Data(), &got); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(manifest), &want)
	if got["kind"] != want["kind"] || got["apiVersion"] != want["apiVersion"] {
		t.Errorf("data = %s, want %s", ev.Data(), manifest)
	}
}

func TestNewRejectsInvalidEvents(t *testing.T) {
	if _, err := New("", TypeRolloutAbort, "default/web", nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty source: err = %v, want ErrMalformed", err)
	}
	if _, err := New("/x", TypeRolloutAbort, "default/web", json.RawMessage(`{oops`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("invalid raw JSON: err = %v, want ErrMalformed", err)
	}
}
