package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// Event is a CloudEvents 1.0 event. Sluice uses the SDK's type so that any
// CloudEvents tooling can produce and read its events.
type Event = cloudevents.Event

// Content types.
const (
	ContentTypeJSON       = "application/json"
	ContentTypeStructured = "application/cloudevents+json"
	contentTypeBatch      = "application/cloudevents-batch+json"

	headerContentType = "content-type"
	headerPrefix      = "ce-"
)

// New builds an event with a fresh id, the current time, JSON data and the
// given source (a URI reference naming the producer, e.g. "/sluice/cli"),
// type and subject ("<namespace>/<name>"). data may be nil; json.RawMessage
// and []byte are taken as already-encoded JSON.
func New(source, eventType, subject string, data any) (Event, error) {
	ev := cloudevents.New(cloudevents.CloudEventsVersionV1)
	ev.SetID(uuid.NewString())
	ev.SetSource(source)
	ev.SetType(eventType)
	ev.SetSubject(subject)
	ev.SetTime(time.Now().UTC())
	if data != nil {
		var raw []byte
		switch d := data.(type) {
		case json.RawMessage:
			raw = d
		case []byte:
			raw = d
		default:
			var err error
			if raw, err = json.Marshal(d); err != nil {
				return ev, fmt.Errorf("encode %s data: %w", eventType, err)
			}
		}
		if !json.Valid(raw) {
			return ev, malformed("%s data is not valid JSON", eventType)
		}
		if err := ev.SetData(ContentTypeJSON, raw); err != nil {
			return ev, fmt.Errorf("set %s data: %w", eventType, err)
		}
	}
	if err := ev.Validate(); err != nil {
		return ev, malformed("%v", err)
	}
	return ev, nil
}

// DecodeData unmarshals the event's JSON data into v. Empty data leaves v
// untouched. A failure wraps ErrMalformed.
func DecodeData(ev Event, v any) error {
	if len(ev.Data()) == 0 {
		return nil
	}
	if err := json.Unmarshal(ev.Data(), v); err != nil {
		return malformed("%s data: %v", ev.Type(), err)
	}
	return nil
}

// Encode renders ev as a NATS message in binary content mode: attributes in
// ce-* headers, datacontenttype in content-type, data as the body.
func Encode(subject string, ev Event) (*nats.Msg, error) {
	if err := ev.Validate(); err != nil {
		return nil, malformed("%v", err)
	}
	msg := nats.NewMsg(subject)
	h := msg.Header
	h.Set(headerPrefix+"specversion", ev.SpecVersion())
	h.Set(headerPrefix+"id", ev.ID())
	h.Set(headerPrefix+"source", ev.Source())
	h.Set(headerPrefix+"type", ev.Type())
	if s := ev.Subject(); s != "" {
		h.Set(headerPrefix+"subject", s)
	}
	if t := ev.Time(); !t.IsZero() {
		h.Set(headerPrefix+"time", t.UTC().Format(time.RFC3339Nano))
	}
	if s := ev.DataSchema(); s != "" {
		h.Set(headerPrefix+"dataschema", s)
	}
	for name, v := range ev.Extensions() {
		h.Set(headerPrefix+name, fmt.Sprint(v))
	}
	if len(ev.Data()) > 0 {
		ct := ev.DataContentType()
		if ct == "" {
			ct = ContentTypeJSON
		}
		h.Set(headerContentType, ct)
		msg.Data = ev.Data()
	}
	return msg, nil
}

// Decode reads a CloudEvent from a NATS message body and headers. Binary mode
// (a ce-specversion header) and structured mode (content-type
// application/cloudevents+json, or no headers at all and a JSON body with a
// specversion member, as `nats pub` sends it) are accepted; header names are
// matched case-insensitively. Data must be JSON. Every failure wraps
// ErrMalformed and says what is wrong.
func Decode(data []byte, header nats.Header) (Event, error) {
	attrs := map[string]string{}
	contentType := ""
	for k, vs := range header {
		if len(vs) == 0 {
			continue
		}
		lk := strings.ToLower(k)
		switch {
		case lk == headerContentType:
			contentType = vs[0]
		case strings.HasPrefix(lk, headerPrefix) && len(lk) > len(headerPrefix):
			attrs[lk[len(headerPrefix):]] = vs[0]
		}
	}
	if _, binary := attrs["specversion"]; binary {
		return decodeBinary(data, attrs, contentType)
	}
	mediaType := mediaTypeOf(contentType)
	switch {
	case mediaType == ContentTypeStructured:
		return decodeStructured(data)
	case mediaType == contentTypeBatch:
		return Event{}, malformed("batch content mode is not supported: publish one event per message")
	case contentType == "" && looksStructured(data):
		return decodeStructured(data)
	}
	return Event{}, malformed("not a CloudEvent: want a ce-specversion header (binary mode) or content-type %s (structured mode)", ContentTypeStructured)
}

func mediaTypeOf(contentType string) string {
	if contentType == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(contentType))
	}
	return mt
}

func looksStructured(data []byte) bool {
	trimmed := bytes.TrimSpace(data)
	return len(trimmed) > 0 && trimmed[0] == '{' && bytes.Contains(trimmed, []byte(`"specversion"`))
}

func isJSONMediaType(mt string) bool {
	return mt == "" || mt == ContentTypeJSON || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

func decodeBinary(data []byte, attrs map[string]string, contentType string) (Event, error) {
	if v := attrs["specversion"]; v != cloudevents.CloudEventsVersionV1 {
		return Event{}, malformed("unsupported specversion %q: want %q", v, cloudevents.CloudEventsVersionV1)
	}
	ev := cloudevents.New(cloudevents.CloudEventsVersionV1)
	for name, v := range attrs {
		switch name {
		case "specversion":
		case "id":
			ev.SetID(v)
		case "source":
			ev.SetSource(v)
		case "type":
			ev.SetType(v)
		case "subject":
			ev.SetSubject(v)
		case "dataschema":
			ev.SetDataSchema(v)
		case "datacontenttype":
			// Binary mode carries it in content-type; accept it here too.
			if contentType == "" {
				contentType = v
			}
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return Event{}, malformed("ce-time %q is not RFC 3339", v)
			}
			ev.SetTime(t)
		default:
			if err := ev.Context.SetExtension(name, v); err != nil {
				return Event{}, malformed("extension %q: %v", name, err)
			}
		}
	}
	if err := setJSONData(&ev, contentType, data); err != nil {
		return Event{}, err
	}
	if err := ev.Validate(); err != nil {
		return Event{}, malformed("%v", err)
	}
	return ev, nil
}

func decodeStructured(data []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return Event{}, malformed("structured event: %v", err)
	}
	if ev.Context == nil {
		return Event{}, malformed("structured event has no specversion")
	}
	if v := ev.SpecVersion(); v != cloudevents.CloudEventsVersionV1 {
		return Event{}, malformed("unsupported specversion %q: want %q", v, cloudevents.CloudEventsVersionV1)
	}
	if err := setJSONData(&ev, ev.DataContentType(), ev.Data()); err != nil {
		return Event{}, err
	}
	if err := ev.Validate(); err != nil {
		return Event{}, malformed("%v", err)
	}
	return ev, nil
}

// setJSONData checks that data is JSON and stores it on ev.
func setJSONData(ev *Event, contentType string, data []byte) error {
	mt := mediaTypeOf(contentType)
	if len(data) == 0 {
		ev.DataEncoded = nil
		return nil
	}
	if !isJSONMediaType(mt) {
		return malformed("data content type %q is not JSON", contentType)
	}
	if !json.Valid(data) {
		return malformed("%s data is not valid JSON", ev.Type())
	}
	if contentType == "" {
		contentType = ContentTypeJSON
	}
	ev.SetDataContentType(contentType)
	ev.DataEncoded = bytes.Clone(data)
	ev.DataBase64 = false
	return nil
}
