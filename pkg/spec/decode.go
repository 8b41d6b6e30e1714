package spec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Errors of DocumentError, for errors.Is.
var (
	// ErrUnsupportedKind: the document is not a Rollout, AnalysisTemplate,
	// ClusterAnalysisTemplate, AnalysisRun or Experiment of
	// argoproj.io/v1alpha1.
	ErrUnsupportedKind = errors.New("unsupported apiVersion/kind")
	// ErrMalformed: the document is not YAML or JSON, not an object, or
	// has a value of the wrong type (a string where a number belongs).
	ErrMalformed = errors.New("malformed")
)

// Document is one decoded document of a stream.
type Document struct {
	// Number is the document's position in the stream, counting from 1 and
	// skipping empty documents (a leading "---", comments only).
	Number int
	// Object is the decoded manifest, as written: not defaulted, not
	// validated.
	Object Object
	// Warnings are the fields the document sets that Sluice does not know,
	// ordered by path.
	Warnings []Warning
}

// DocumentError is why one document of a stream could not be decoded.
type DocumentError struct {
	// Number is the document's position, as in Document.
	Number int
	// APIVersion and Kind are as written; empty when absent or unreadable.
	APIVersion string
	Kind       string
	// Err wraps ErrUnsupportedKind or ErrMalformed.
	Err error
}

// Error renders e as "document N: ...".
func (e *DocumentError) Error() string {
	return fmt.Sprintf("document %d: %v", e.Number, e.Err)
}

// Unwrap returns e.Err.
func (e *DocumentError) Unwrap() error { return e.Err }

// Decode reads a stream of YAML documents separated by "---" lines, or of
// JSON objects, and decodes each document according to its apiVersion and
// kind. Keys are matched case-sensitively, as Kubernetes does, and every
// key that matches no field is reported as a Warning of its document.
//
// Decode decodes as much as it can: it returns every document it could
// decode, in stream order, and, when some could not be, an error joining
// one *DocumentError per such document. A YAML document that cannot be read
// does not stop the documents after it; in a JSON stream, a syntax error
// does.
func Decode(data []byte) ([]Document, error) {
	var docs []Document
	var errs []error
	for _, r := range decodeStream(data) {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		docs = append(docs, r.doc)
	}
	return docs, errors.Join(errs...)
}

// decoded is one document of a stream: decoded, or why not.
type decoded struct {
	doc Document
	err *DocumentError
}

func decodeStream(data []byte) []decoded {
	var out []decoded
	number := 0
	next := func(doc []byte, err error) {
		number++
		if err != nil {
			out = append(out, decoded{err: &DocumentError{Number: number, Err: fmt.Errorf("%w: %v", ErrMalformed, err)}})
			return
		}
		out = append(out, decodeDocument(number, doc))
	}

	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		for {
			var doc json.RawMessage
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				return out
			}
			next(doc, err)
			if err != nil {
				return out
			}
		}
	}

	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		chunk, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			next(nil, err)
			return out
		}
		doc, err := yaml.YAMLToJSON(chunk)
		if err == nil && isEmptyDocument(doc) {
			continue
		}
		next(doc, err)
	}
}

func isEmptyDocument(doc []byte) bool {
	d := bytes.TrimSpace(doc)
	return len(d) == 0 || string(d) == "null"
}

// decodeDocument decodes one JSON document into the Go type its apiVersion
// and kind name.
func decodeDocument(number int, doc []byte) decoded {
	fail := func(apiVersion, kind string, err error) decoded {
		return decoded{err: &DocumentError{Number: number, APIVersion: apiVersion, Kind: kind, Err: err}}
	}
	var raw map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(doc, &raw); err != nil || raw == nil {
		return fail("", "", fmt.Errorf("%w: want a YAML or JSON object with apiVersion and kind", ErrMalformed))
	}
	apiVersion, _ := raw["apiVersion"].(string)
	kind, _ := raw["kind"].(string)
	obj := newObject(kind)
	if apiVersion != APIVersion || obj == nil {
		return fail(apiVersion, kind, unsupported(apiVersion, kind))
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(doc, obj); err != nil {
		return fail(apiVersion, kind, malformed(err))
	}
	warnings := unknownFields(nil, raw, reflect.TypeOf(obj))
	return decoded{doc: Document{Number: number, Object: obj, Warnings: warnings}}
}

// malformed wraps a decoding error in ErrMalformed, naming the field and
// the expected type when the error is a type mismatch.
func malformed(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("%w: %s: got %s, want %s", ErrMalformed, te.Field, te.Value, jsonTypeName(te.Type))
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// jsonTypeName names the JSON type that decodes into t.
func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "list"
	}
	return "object"
}

func unsupported(apiVersion, kind string) error {
	const want = "Sluice reads Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and Experiment of " + APIVersion
	switch {
	case kind == "" && apiVersion == "":
		return fmt.Errorf("%w: apiVersion and kind are missing; %s", ErrUnsupportedKind, want)
	case kind == "":
		return fmt.Errorf("%w: kind is missing (apiVersion %q); %s", ErrUnsupportedKind, apiVersion, want)
	}
	return fmt.Errorf("%w: kind %q of apiVersion %q; %s", ErrUnsupportedKind, kind, apiVersion, want)
}
