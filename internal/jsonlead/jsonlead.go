// Package jsonlead reads the first fields of a JSON object without decoding
// the rest. The orchestrator's and the analyzer's bucket records put their
// small fields ("wakeup", "phase") first, so a watcher of the bucket reads
// them without scanning a large entry.
package jsonlead

import (
	"bytes"
	"encoding/json"
	"slices"
)

// Fields returns the raw values of the named fields of the JSON
// object data when they are its first keys, in any order: a watcher of a
// bucket whose writers put small fields first reads them without scanning
// the rest of a large entry. ok is false when another key comes before all
// of them were found, or data is not an object; the caller then decodes
// the whole entry.
func Fields(data []byte, names ...string) (values map[string]json.RawMessage, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	values = make(map[string]json.RawMessage, len(names))
	for len(values) < len(names) {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, isKey := t.(string)
		if !isKey || !slices.Contains(names, key) {
			return nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		values[key] = v
	}
	return values, true
}
